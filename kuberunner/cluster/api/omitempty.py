"""`false` flags a real API server never serves back.

It decodes a body into Go structs and encodes what it stores from them, so a plain (non-pointer)
`bool` field tagged `omitempty` that is false disappears: a pod created with `"stdinOnce": false`
is served without `stdinOnce`, exactly as one that never named it. Pointer booleans (`optional`,
`immutable`, `readOnlyRootFilesystem`, ...) keep their `false`. The table lists the plain omitempty
flags of the types this server accepts (core/v1's Go types, Kubernetes 1.34).
"""

from __future__ import annotations

from typing import Any

from kuberunner.cluster.api.fieldschema import FIELDS

FALSE_OMITTED: dict[str, frozenset[str]] = {
    "Container": frozenset({"stdin", "stdinOnce", "tty"}),
    "EphemeralContainer": frozenset({"stdin", "stdinOnce", "tty"}),
    "VolumeMount": frozenset({"readOnly"}),
    "PodSpec": frozenset({"hostNetwork", "hostPID", "hostIPC"}),
    "PersistentVolumeClaimVolumeSource": frozenset({"readOnly"}),
}


def drop_false_flags(type_name: str, value: Any) -> None:
    """Remove, in place, every listed flag that is `false` anywhere in `value` (of `type_name`)."""
    fields = FIELDS.get(type_name)
    if fields is None or not isinstance(value, dict):
        return
    for name in FALSE_OMITTED.get(type_name, frozenset()):
        if value.get(name) is False:
            del value[name]
    for name, child in value.items():
        desc = fields.get(name, "")
        if desc.startswith("[]") and isinstance(child, list):
            for item in child:
                drop_false_flags(desc[2:], item)
        elif desc.startswith("{}") and isinstance(child, dict):
            for item in child.values():
                drop_false_flags(desc[2:], item)
        elif desc:
            drop_false_flags(desc, child)
