"""The resources this server serves, their kinds, and the small helpers every layer shares.

One table, so discovery, routing, decoding and tables cannot disagree about a name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")


_ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
RESOURCES: dict[str, ResourceInfo] = {
    "pods": ResourceInfo("pods", "Pod", True, ("po",), _ALL_VERBS),
    "secrets": ResourceInfo("secrets", "Secret", True, (), _ALL_VERBS),
    "configmaps": ResourceInfo("configmaps", "ConfigMap", True, ("cm",), _ALL_VERBS),
    "events": ResourceInfo("events", "Event", True, ("ev",), _ALL_VERBS),
    "serviceaccounts": ResourceInfo("serviceaccounts", "ServiceAccount", True, ("sa",), _ALL_VERBS),
    "namespaces": ResourceInfo("namespaces", "Namespace", False, ("ns",)),
    # The one node is the server's own: readable, never written by clients.
    "nodes": ResourceInfo("nodes", "Node", False, ("no",), ("get", "list", "watch")),
}

# Namespaces present from the start, as on a fresh cluster.
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def rfc3339(when: dt.datetime) -> str:
    """Whole seconds with a `Z`, as metav1.Time marshals."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_bool(text: str) -> bool | None:
    """Go's strconv.ParseBool: None for anything it would reject."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    return None
