"""Unknown fields: found, dropped, and reported as the `fieldValidation` query parameter asks.

A real API server decodes into Go structs, so a field its schema lacks never reaches storage: with
`Strict` (what kubectl sends) the request fails with a "strict decoding error", with `Warn` (the
default when the parameter is absent) the field is dropped and each one named in a `Warning`
header, with `Ignore` it is dropped silently. The schema is `fieldschema.FIELDS`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kuberunner.cluster.api import admission
from kuberunner.cluster.api.fieldschema import FIELDS
from kuberunner.cluster.api.kinds import RESOURCES
from kuberunner.cluster.status import StatusError, bad_request

MODES = ("Ignore", "Warn", "Strict")
APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
DEFAULT_MODE = "Warn"


def parse_mode(raw: str | None) -> str:
    if raw is None or raw == "":
        return DEFAULT_MODE
    if raw not in MODES:
        raise bad_request(
            f"fieldValidation: Unsupported value: {raw!r}: supported values: Ignore, Warn, Strict"
        )
    return raw


def prune(resource: str, obj: Any) -> list[str]:
    """Remove from `obj`, in place, every field its kind's schema lacks; their paths, sorted."""
    found: list[str] = []
    _walk(RESOURCES[resource].kind, obj, "", found)
    return sorted(found)


def _walk(type_name: str, value: Any, path: str, found: list[str]) -> None:
    fields = FIELDS.get(type_name)
    if fields is None or not isinstance(value, dict):
        return
    for name in list(value):
        where = f"{path}.{name}" if path else name
        if name not in fields:
            found.append(where)
            del value[name]
            continue
        desc = fields[name]
        child = value[name]
        if desc.startswith("[]") and isinstance(child, list):
            for i, item in enumerate(child):
                _walk(desc[2:], item, f"{where}[{i}]", found)
        elif desc.startswith("{}") and isinstance(child, dict):
            for key, item in child.items():
                _walk(desc[2:], item, f"{where}[{key}]", found)
        elif desc:
            _walk(desc, child, where, found)


def _strict_message(found: list[str]) -> str:
    return "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in found)


def check_body(resource: str, body: Any, mode: str) -> list[str]:
    """A create or update body: prune it; the warnings to send, or 400 in Strict mode."""
    found = prune(resource, body)
    if found and mode == "Strict":
        raise admission.cannot_handle(resource, _strict_message(found))
    return warnings(found, mode)


def check_patched(resource: str, patch_type: str, patch: Any, patched: Any, mode: str) -> list[str]:
    """The result of a patch: prune it; the warnings, or the error the real server gives: a 422
    quoting the patch for merge patches, quoting the result for JSON patches, and a 500 for
    server-side apply (whose typed patch refuses unknown fields in every mode)."""
    if patch_type == APPLY:
        found = prune(resource, copy.deepcopy(patched))
        if found:
            sent: dict[str, Any] = patch if isinstance(patch, dict) else {}
            meta = sent.get("metadata")
            if not isinstance(meta, dict):
                meta = {}
            where = f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"
            raise StatusError(
                500,
                "",
                f"failed to create typed patch object ({where}; /v1, Kind={RESOURCES[resource].kind}): "
                f".{found[0]}: field not declared in schema",
            )
        return []
    if patch_type == JSON_PATCH:
        shown = json.dumps(patched, separators=(",", ":"), sort_keys=True)
    else:
        shown = go_format(patch)
    found = prune(resource, patched)
    if found and mode == "Strict":
        detail = f"Invalid value: {json.dumps(shown)}: {_strict_message(found)}"
        raise StatusError(
            422,
            "Invalid",
            f' "" is invalid: patch: {detail}',
            {"causes": [{"reason": "FieldValueInvalid", "message": detail, "field": "patch"}]},
        )
    return warnings(found, mode)


def warnings(found: list[str], mode: str) -> list[str]:
    return [f'unknown field "{p}"' for p in found] if mode == "Warn" else []


def go_format(value: Any) -> str:
    """Go's `%v` of a decoded JSON value, which the real server quotes in a strict patch error."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_format(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
