"""meta.k8s.io/v1 Table responses, so `kubectl get` prints its usual columns.

kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...`; the server renders the
rows (the AGE text included), kubectl prints them. The pod STATUS column follows the rules of the
API server's pod printer. Pure functions.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kuberunner.cluster.api import kinds

RawObject = dict[str, Any]


def _col(
    name: str, description: str, *, type_: str = "string", fmt: str = "", priority: int = 0
) -> RawObject:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


NAME_COL = _col("Name", "Name must be unique within a namespace.", fmt="name")
AGE_COL = _col(
    "Age", "CreationTimestamp is a timestamp representing the server time when this object was created."
)

COLUMNS: dict[str, list[RawObject]] = {
    "pods": [
        NAME_COL,
        _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
        _col("Status", "The aggregate status of the containers in this pod."),
        _col("Restarts", "The number of times the containers in this pod have been restarted."),
        AGE_COL,
        _col("IP", "IP address allocated to the pod.", priority=1),
        _col("Node", "Name of the node where the pod is running.", priority=1),
        _col("Nominated Node", "Name of the node nominated by the scheduler.", priority=1),
        _col("Readiness Gates", "Readiness gates of the pod.", priority=1),
    ],
    "secrets": [
        NAME_COL,
        _col("Type", "The type of the secret"),
        _col("Data", "The number of entries in the secret", type_="integer"),
        AGE_COL,
    ],
    "configmaps": [
        NAME_COL,
        _col("Data", "The number of entries in the config map", type_="integer"),
        AGE_COL,
    ],
    "namespaces": [NAME_COL, _col("Status", "The status of the namespace"), AGE_COL],
    "serviceaccounts": [
        NAME_COL,
        _col("Secrets", "The number of secrets the service account references", type_="integer"),
        AGE_COL,
    ],
    "nodes": [
        NAME_COL,
        _col("Status", "The status of the node"),
        _col("Roles", "The roles of the node"),
        AGE_COL,
        _col("Version", "Kubelet Version reported by the node."),
        _col("Internal-IP", "List of internal IPs for the node.", priority=1),
        _col("External-IP", "List of external IPs for the node.", priority=1),
        _col("OS-Image", "OS image reported by the node from /etc/os-release.", priority=1),
        _col("Kernel-Version", "Kernel version reported by the node.", priority=1),
        _col("Container-Runtime", "Container runtime version reported by the node.", priority=1),
    ],
    "events": [
        _col("Last Seen", "The time since the event was last seen."),
        _col("Type", "The type of the event."),
        _col("Reason", "The reason of the event."),
        _col("Object", "The object the event is about."),
        _col("Message", "A human-readable description of the event."),
    ],
}


def human_duration(seconds: float) -> str:
    """apimachinery duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 8760}y" if days == 0 else f"{hours // 8760}y{days}d"
    return f"{hours // 8760}y"


def age(stamp: Any, now: dt.datetime) -> str:
    when = kinds.parse_rfc3339(stamp) if isinstance(stamp, str) else None
    if when is None:
        return "<unknown>"
    return human_duration((now - when).total_seconds())


def pod_status_text(pod: RawObject) -> tuple[str, int, int]:
    """(STATUS, ready containers, restarts), following the API server's pod printer."""
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    reason = status.get("reason") or status.get("phase") or ""
    restarts = 0
    ready = 0
    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, ctr in enumerate(init_statuses):
        restarts += int(ctr.get("restartCount") or 0)
        state = ctr.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term is not None and term.get("exitCode") == 0:
            continue
        initializing = True
        if term is not None:
            reason = (
                "Init:" + term["reason"]
                if term.get("reason")
                else (
                    f"Init:Signal:{term['signal']}"
                    if term.get("signal")
                    else f"Init:ExitCode:{term.get('exitCode')}"
                )
            )
        elif wait is not None and wait.get("reason") and wait.get("reason") != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        break
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if not initializing or conditions.get("Initialized") == "True":
        restarts = 0
        running = False
        for ctr in reversed(status.get("containerStatuses") or []):
            restarts += int(ctr.get("restartCount") or 0)
            state = ctr.get("state") or {}
            term, wait = state.get("terminated"), state.get("waiting")
            if wait is not None and wait.get("reason"):
                reason = wait["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                reason = (
                    f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode')}"
                )
            elif ctr.get("ready") and state.get("running") is not None:
                running = True
                ready += 1
        if reason == "Completed" and running:
            reason = "Running" if "Ready" in conditions else "NotReady"
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp") and status.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, ready, restarts


def _cells(resource: str, obj: RawObject, now: dt.datetime) -> list[Any]:
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    created = age(meta.get("creationTimestamp"), now)
    if resource == "pods":
        text, ready, restarts = pod_status_text(obj)
        total = len((obj.get("spec") or {}).get("containers") or [])
        status = obj.get("status") or {}
        return [
            name,
            f"{ready}/{total}",
            text,
            str(restarts),
            created,
            status.get("podIP") or "<none>",
            (obj.get("spec") or {}).get("nodeName") or "<none>",
            "<none>",
            "<none>",
        ]
    if resource == "secrets":
        return [name, obj.get("type", ""), len(obj.get("data") or {}), created]
    if resource == "configmaps":
        return [name, len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), created]
    if resource == "namespaces":
        return [name, (obj.get("status") or {}).get("phase", ""), created]
    if resource == "serviceaccounts":
        return [name, len(obj.get("secrets") or []), created]
    if resource == "nodes":
        return _node_cells(obj, name, created)
    involved = obj.get("involvedObject") or {}
    return [
        age(obj.get("lastTimestamp") or meta.get("creationTimestamp"), now),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        obj.get("message", ""),
    ]


def _node_cells(node: RawObject, name: str, created: str) -> list[Any]:
    status = node.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    info = status.get("nodeInfo") or {}
    internal = [a["address"] for a in status.get("addresses") or [] if a.get("type") == "InternalIP"]
    return [
        name,
        "Ready" if ready else "NotReady",
        "<none>",
        created,
        info.get("kubeletVersion", ""),
        ",".join(internal) or "<none>",
        "<none>",
        info.get("osImage", ""),
        info.get("kernelVersion", ""),
        info.get("containerRuntimeVersion", ""),
    ]


def _row_object(obj: RawObject, include: str) -> RawObject | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(
    resource: str,
    objects: list[RawObject],
    *,
    resource_version: str,
    include_object: str = "Metadata",
    with_columns: bool = True,
    now: dt.datetime | None = None,
) -> RawObject:
    moment = now or dt.datetime.now(dt.UTC)
    rows = []
    for obj in objects:
        row: RawObject = {"cells": _cells(resource, obj, moment)}
        shown = _row_object(obj, include_object)
        if shown is not None:
            row["object"] = shown
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": COLUMNS[resource] if with_columns else [],
        "rows": rows,
    }


def wants_table(accept: str) -> bool:
    """True when the Accept header prefers a meta.k8s.io Table (kubectl get)."""
    first = accept.split(",")[0].replace(" ", "")
    return "as=Table" in first and "g=meta.k8s.io" in first
