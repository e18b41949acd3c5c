"""The four PATCH flavours the API server accepts, as pure functions over JSON values.

- JSON merge patch (RFC 7386): maps merge, `null` deletes, everything else replaces.
- Strategic merge patch: a merge patch in which the lists kubectl cares about (containers, volumes,
  env, volumeMounts, ports, conditions, ownerReferences...) merge by their key, plus the directives
  kubectl emits (`$patch`, `$setElementOrder/...`, `$retainKeys`, `$deleteFromPrimitiveList/...`).
  The merge keys come from a fixed table keyed by field name: enough for core/v1 pods, secrets,
  configmaps and events, which is all this server stores.
- JSON patch (RFC 6902).
- Server-side apply is treated by the caller as a strategic merge of the applied object.

Errors raise `PatchError`; the HTTP layer maps it to a Status.
"""

from __future__ import annotations

import copy
from typing import Any

# Field name -> merge key of its list elements (patchMergeKey in core/v1 types).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "resourceClaims": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
}
# Lists of scalars whose patchStrategy is merge (set union) rather than replace.
MERGED_SCALAR_LISTS = frozenset({"finalizers"})


class PatchError(ValueError):
    """The patch document cannot be applied; `code` is the HTTP status the API server uses."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: returns a new value; neither argument is modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge for core/v1 objects; returns a new value."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch body must be a JSON object", 400)
    return _merge_map(target if isinstance(target, dict) else {}, patch)


def _merge_map(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    if directive is not None:
        raise PatchError(f"Unknown patch type: {directive!r}", 400)
    result = copy.deepcopy(target)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(value, list) and isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            result[key] = _merge_map(current if isinstance(current, dict) else {}, value)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        keep = {k for k in retain if isinstance(k, str)}
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    existing = current if isinstance(current, list) else []
    if field in MERGED_SCALAR_LISTS:
        merged = list(existing)
        merged.extend(v for v in patch if v not in merged)
        return copy.deepcopy(merged)
    key = MERGE_KEYS.get(field)
    if key is None or not all(isinstance(e, dict) for e in patch):
        # Replace strategy; drop directive-only elements a client might send anyway.
        return [copy.deepcopy(e) for e in patch if not (isinstance(e, dict) and "$patch" in e)]
    if any(e.get("$patch") == "replace" for e in patch):
        return [copy.deepcopy(e) for e in patch if e.get("$patch") != "replace"]
    result = [copy.deepcopy(e) for e in existing]
    for element in patch:
        if key not in element:
            raise PatchError(f"map: {element} does not contain declared merge key: {key}")
        idx = next(
            (i for i, e in enumerate(result) if isinstance(e, dict) and e.get(key) == element[key]),
            None,
        )
        if element.get("$patch") == "delete":
            if idx is not None:
                del result[idx]
            continue
        if idx is None:
            result.append(_merge_map({}, element))
        else:
            result[idx] = _merge_map(result[idx], element)
    return result


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902; returns a new document."""
    if not isinstance(operations, list):
        raise PatchError("json patch must be a JSON array of operations", 400)
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise PatchError(f"invalid JSON patch operation: {op!r}", 400)
        doc = _apply_op(doc, op)
    return doc


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"invalid JSON pointer: {path!r}", 400)
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        node = _child(node, part, path)
    return node, parts[-1]


def _child(node: Any, part: str, path: str) -> Any:
    if isinstance(node, dict):
        if part not in node:
            raise PatchError(f"doc is missing path: {path!r}")
        return node[part]
    if isinstance(node, list):
        return node[_index(node, part, path, allow_end=False)]
    raise PatchError(f"doc is missing path: {path!r}")


def _index(node: list[Any], part: str, path: str, *, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(node)
    if not part.isdigit():
        raise PatchError(f"invalid array index {part!r} in path {path!r}")
    idx = int(part)
    if idx > len(node) or (idx == len(node) and not allow_end):
        raise PatchError(f"array index out of bounds in path {path!r}")
    return idx


def _get(doc: Any, path: str) -> Any:
    node = doc
    for part in _pointer(path):
        node = _child(node, part, path)
    return node


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"remove operation does not apply: doc is missing path: {path!r}")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, path, allow_end=False))
    raise PatchError(f"remove operation does not apply: doc is missing path: {path!r}")


def _add(doc: Any, path: str, value: Any, *, replace: bool) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"replace operation does not apply: doc is missing key: {path}")
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        idx = _index(parent, last, path, allow_end=not replace)
        if replace:
            parent[idx] = copy.deepcopy(value)
        else:
            parent.insert(idx, copy.deepcopy(value))
    else:
        raise PatchError(f"add operation does not apply: doc is missing path: {path!r}")
    return doc


def _apply_op(doc: Any, op: dict[str, Any]) -> Any:
    kind, path = op["op"], op.get("path")
    if not isinstance(path, str):
        raise PatchError(f"operation {kind!r} is missing a path", 400)
    if kind in ("add", "replace"):
        if "value" not in op:
            raise PatchError(f"operation {kind!r} is missing a value", 400)
        return _add(doc, path, op["value"], replace=kind == "replace")
    if kind == "remove":
        return _remove(doc, path)[0]
    if kind == "test":
        if _get(doc, path) != op.get("value"):
            raise PatchError(f"testing value {path} failed")
        return doc
    if kind in ("move", "copy"):
        source = op.get("from")
        if not isinstance(source, str):
            raise PatchError(f"operation {kind!r} is missing 'from'", 400)
        if kind == "move":
            doc, value = _remove(doc, source)
        else:
            value = _get(doc, source)
        return _add(doc, path, value, replace=False)
    raise PatchError(f"Unexpected kind: {kind}", 400)
