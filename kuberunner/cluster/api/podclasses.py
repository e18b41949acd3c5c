"""Pod admission for the classes a pod names: its PriorityClass and its RuntimeClass.

This server stores neither kind, so only what every cluster has exists: the two built-in
PriorityClasses, and no RuntimeClass (its node has one runtime, the sandbox). A pod naming any
other is refused with the real admission plugins' 403, not run as if the name meant nothing.
"""

from __future__ import annotations

from typing import Any

from kuberunner.cluster.status import StatusError

BUILTIN_PRIORITY_CLASSES = {"system-cluster-critical": 2000000000, "system-node-critical": 2000001000}


def admit_classes(pod: dict[str, Any]) -> None:
    """Resolve `priorityClassName` to `priority`, as the Priority plugin does; refuse unknown classes."""
    spec = pod.get("spec") or {}
    name = (pod.get("metadata") or {}).get("name") or ""
    priority_class = spec.get("priorityClassName")
    if priority_class:
        if priority_class not in BUILTIN_PRIORITY_CLASSES:
            raise _forbidden(name, f"no PriorityClass with name {priority_class} was found")
        spec["priority"] = BUILTIN_PRIORITY_CLASSES[priority_class]
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    runtime_class = spec.get("runtimeClassName")
    if runtime_class:
        raise _forbidden(name, f'pod rejected: RuntimeClass "{runtime_class}" not found')


def _forbidden(name: str, reason: str) -> StatusError:
    return StatusError(
        403, "Forbidden", f'pods "{name}" is forbidden: {reason}', {"name": name, "kind": "pods"}
    )
