"""core/v1 Events as a kubelet records them, and the aggregation of repeats (count, lastTimestamp)."""

from __future__ import annotations

import copy
import secrets
from typing import Any

from kuberunner.cluster.api import kinds

RawObject = dict[str, Any]


def new_event(involved: RawObject, *, reason: str, message: str, type_: str, node_name: str) -> RawObject:
    meta = involved.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    stamp = kinds.rfc3339(kinds.now())
    return {
        "kind": "Event",
        "apiVersion": "v1",
        # The kubelet names events <object>.<unique hex>.
        "metadata": {"name": f"{meta.get('name', 'unknown')}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": {
            "kind": involved.get("kind", "Pod"),
            "namespace": namespace,
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
            "apiVersion": "v1",
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": node_name},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "type": type_,
        "eventTime": None,
        "reportingComponent": "kubelet",
        "reportingInstance": node_name,
    }


def is_repeat(event: RawObject, uid: Any, reason: str, message: str) -> bool:
    involved = event.get("involvedObject") or {}
    return involved.get("uid") == uid and event.get("reason") == reason and event.get("message") == message


def repeated(event: RawObject) -> RawObject:
    updated = copy.deepcopy(event)
    updated["count"] = int(event.get("count") or 1) + 1
    updated["lastTimestamp"] = kinds.rfc3339(kinds.now())
    return updated
