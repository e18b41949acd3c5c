"""What each nested table of `[runners.kubernetes]` may hold: field → expected type, or a nested shape."""

from __future__ import annotations

POD_SECURITY_KEYS: dict[str, type] = {
    "run_as_user": int,
    "run_as_group": int,
    "run_as_non_root": bool,
    "fs_group": int,
    "supplemental_groups": list,
    "selinux_type": str,
}
CONTAINER_SECURITY_KEYS: dict[str, type] = {
    "privileged": bool,
    "allow_privilege_escalation": bool,
    "read_only_root_filesystem": bool,
    "run_as_user": int,
    "run_as_group": int,
    "run_as_non_root": bool,
    "proc_mount": str,
    "selinux_type": str,
    "capabilities": dict,
}
REQUIREMENT = {"key": str, "operator": str, "values": [str]}
NODE_TERM = {"match_expressions": [REQUIREMENT], "match_fields": [REQUIREMENT]}
LABEL_SELECTOR = {"match_labels": dict, "match_expressions": [REQUIREMENT]}
POD_TERM = {
    "label_selector": LABEL_SELECTOR,
    "namespaces": [str],
    "topology_key": str,
    "namespace_selector": LABEL_SELECTOR,
}
POD_AFFINITY = {
    "required_during_scheduling_ignored_during_execution": [POD_TERM],
    "preferred_during_scheduling_ignored_during_execution": [{"weight": int, "pod_affinity_term": POD_TERM}],
}
AFFINITY = {
    "node_affinity": {
        "required_during_scheduling_ignored_during_execution": {"node_selector_terms": [NODE_TERM]},
        "preferred_during_scheduling_ignored_during_execution": [{"weight": int, "preference": NODE_TERM}],
    },
    "pod_affinity": POD_AFFINITY,
    "pod_anti_affinity": POD_AFFINITY,
}
"""GitLab Runner's affinity tables, Kubernetes' Affinity in snake_case (its field set, no more)."""
MOUNT_KEYS: dict[str, type] = {"name": str, "mount_path": str, "sub_path": str, "read_only": bool}
VOLUME_KEYS: dict[str, dict[str, type]] = {
    "host_path": {**MOUNT_KEYS, "host_path": str, "mount_propagation": str},
    "pvc": {**MOUNT_KEYS, "mount_propagation": str},
    "csi": {**MOUNT_KEYS, "driver": str, "fs_type": str, "volume_attributes": dict},
    "config_map": {**MOUNT_KEYS, "items": dict},
    "secret": {**MOUNT_KEYS, "items": dict},
    "empty_dir": {**MOUNT_KEYS, "medium": str, "size_limit": str},
}
KIND_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def is_kind(value: object, kind: type) -> bool:
    """isinstance, except that a bool is no integer here (TOML has both)."""
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)
