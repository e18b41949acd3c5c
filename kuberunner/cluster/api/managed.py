"""metadata.managedFields: which manager last set which field, as the API server records it.

Every write through the API is an `Update` (or, for server-side apply, an `Apply`) by a manager: the
`fieldManager` query parameter, else the client's User-Agent up to its first `/` (`kubectl-create`,
`kubectl-label`, ...). The manager owns the fields it set on create, and on an update the fields it
changed, which the other managers lose. Field sets are FieldsV1: `f:<name>` for a field,
`k:{"name":"c"}` for an item of a list keyed by name (containers, env, volumes, ...), `.` for the
node itself. Pure functions over JSON objects.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kuberunner.cluster.api.fieldschema import FIELDS

FieldSet = dict[str, Any]

# Lists merged by key (x-kubernetes-list-map-keys); every other list is atomic.
_LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "imagePullSecrets": ("name",),
    "volumeMounts": ("mountPath",),
    "ports": ("containerPort", "protocol"),
    "ownerReferences": ("uid",),
    "conditions": ("type",),
    "podIPs": ("ip",),
}
# Identity and server-owned metadata: never part of a field set.
_SKIP_META = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
}
_SKIP_TOP = {"kind", "apiVersion"}
# Free-form values owned as a whole.
_OPAQUE = {"fieldsV1"}


def manager_name(query_value: str | None, user_agent: str) -> str:
    if query_value:
        return query_value
    return user_agent.split("/", 1)[0] or "unknown"


def _item_key(item: Any, keys: tuple[str, ...]) -> str | None:
    if not isinstance(item, dict) or any(k not in item for k in keys):
        return None
    return "k:" + json.dumps({k: item[k] for k in keys}, separators=(",", ":"), sort_keys=True)


def _struct(value: dict[str, Any], type_name: str) -> FieldSet:
    known = FIELDS.get(type_name, {})
    # Empty strings and nulls are what Go's omitempty leaves out: not set, so not owned.
    return {f"f:{k}": _fields(v, k, known.get(k, "")) for k, v in value.items() if v not in (None, "")}


def _fields(value: Any, name: str, desc: str) -> FieldSet:
    """The field set below one field: structs list their fields, maps and keyed list items are also
    marked themselves (`.`), atomic values and lists are leaves."""
    if desc.startswith("[]") and isinstance(value, list) and name in _LIST_KEYS:
        out: FieldSet = {}
        for item in value:
            ident = _item_key(item, _LIST_KEYS[name])
            if ident is not None:
                out[ident] = {".": {}, **_struct(item, desc[2:])}
        return out
    if desc and not desc.startswith(("[]", "{}")) and isinstance(value, dict):
        return _struct(value, desc)
    if not desc and isinstance(value, dict) and value and name not in _OPAQUE:
        return {".": {}, **{f"f:{k}": {} for k in value}}
    return {}


def object_fields(obj: dict[str, Any], kind: str, *, status: bool = False) -> FieldSet:
    """Every field a write of `obj` sets: the spec side, or only `status` for the status subresource."""
    known = FIELDS.get(kind, {})
    out: FieldSet = {}
    for key, value in obj.items():
        if key in _SKIP_TOP or (key == "status") != status:
            continue
        if key == "metadata" and isinstance(value, dict):
            meta = _struct({k: v for k, v in value.items() if k not in _SKIP_META}, "ObjectMeta")
            if meta:
                out["f:metadata"] = meta
            continue
        out[f"f:{key}"] = _fields(value, key, known.get(key, ""))
    return out


def _leaves(fields: FieldSet, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for key, sub in fields.items():
        path = (*prefix, key)
        found |= _leaves(sub, path) if sub else {path}
    return found


def _build(leaves: set[tuple[str, ...]]) -> FieldSet:
    out: FieldSet = {}
    for path in sorted(leaves):
        node = out
        for part in path:
            node = node.setdefault(part, {})
    return _collapse(out)


def _collapse(fields: FieldSet) -> FieldSet:
    """A node owned without any owned field below it is written `{}`, not `{".": {}}`."""
    out: FieldSet = {}
    for key, sub in fields.items():
        below = _collapse(sub)
        out[key] = {} if set(below) == {"."} else below
    return out


def _owned(entry: dict[str, Any], current: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """An entry's leaves in `_leaves` form: a collapsed `{}` node is its `.` when the object has one."""
    leaves = _leaves(entry.get("fieldsV1") or {})
    return {(*p, ".") if p not in current and (*p, ".") in current else p for p in leaves}


def _value_at(obj: Any, path: tuple[str, ...]) -> Any:
    node = obj
    for part in path:
        if part == ".":
            return node is not None
        if part.startswith("f:") and isinstance(node, dict):
            node = node.get(part[2:])
        elif part.startswith("k:") and isinstance(node, list):
            want = json.loads(part[2:])
            node = next(
                (i for i in node if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())),
                None,
            )
        else:
            return None
    return node


def record(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    operation: str,
    time: str,
    subresource: str | None = None,
) -> None:
    """Set `new["metadata"]["managedFields"]` for a write of `new` over `old` (None: a create)."""
    status = subresource == "status"
    kind = str(new.get("kind") or "")
    old_meta = (old or {}).get("metadata") or {}
    entries: list[dict[str, Any]] = copy.deepcopy(old_meta.get("managedFields") or [])
    current = _leaves(object_fields(new, kind, status=status))
    changed = {p for p in current if old is None or _value_at(old, p) != _value_at(new, p)}
    mine = next(
        (
            e
            for e in entries
            if (e.get("manager"), e.get("operation"), e.get("subresource"))
            == (manager, operation, subresource)
        ),
        None,
    )
    if not changed and mine is None:
        new["metadata"]["managedFields"] = entries
        return
    for other in entries:
        if other is not mine:
            other["fieldsV1"] = _build(_owned(other, current) - changed)
    kept = [e for e in entries if e is mine or e["fieldsV1"]]
    previous = _owned(mine, current) if mine is not None else set()
    entry: dict[str, Any] = {
        "manager": manager,
        "operation": operation,
        "apiVersion": "v1",
        "time": time if changed or mine is None else mine.get("time", time),
        "fieldsType": "FieldsV1",
        "fieldsV1": _build((previous & current) | changed),
    }
    if subresource:
        entry["subresource"] = subresource
    if mine is not None:
        kept[kept.index(mine)] = entry
    else:
        kept.append(entry)
    new["metadata"]["managedFields"] = kept
