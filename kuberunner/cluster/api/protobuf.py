"""Decode the Kubernetes protobuf envelope for the objects kubectl's typed commands send.

`kubectl create secret|configmap|namespace|serviceaccount` and `kubectl auth can-i` POST
`application/vnd.kubernetes.protobuf`, not JSON, and client-go never falls back on a 415. The
envelope is `k8s\\x00` followed by a runtime.Unknown message (typeMeta=1, raw=2,
contentEncoding=3, contentType=4) whose `raw` is the object itself. This pure decoder knows the
fields of Secret, ConfigMap, Namespace, ServiceAccount and SelfSubjectAccessReview (with
ObjectMeta) and turns them into the JSON the rest of the server handles; unknown fields are
skipped, as proto2 does. Answers always go back as JSON, which those clients also accept.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"
MAX_DEPTH = 16

# field number -> (JSON name, type). Types: string, bytes, bool, int, map_ss, map_sb, strings, msg:<name>,
# msgs:<name> (repeated).
Schema = dict[int, tuple[str, str]]
SCHEMAS: dict[str, Schema] = {
    "Unknown": {
        1: ("typeMeta", "msg:TypeMeta"),
        2: ("raw", "bytes"),
        3: ("contentEncoding", "string"),
        4: ("contentType", "string"),
    },
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        11: ("labels", "map_ss"),
        12: ("annotations", "map_ss"),
        13: ("ownerReferences", "msgs:OwnerReference"),
        14: ("finalizers", "strings"),
    },
    "OwnerReference": {
        1: ("kind", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("controller", "bool"),
        7: ("blockOwnerDeletion", "bool"),
    },
    "Secret": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "map_sb"),
        3: ("type", "string"),
        4: ("stringData", "map_ss"),
        5: ("immutable", "bool"),
    },
    "ConfigMap": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "map_ss"),
        3: ("binaryData", "map_sb"),
        4: ("immutable", "bool"),
    },
    "Namespace": {1: ("metadata", "msg:ObjectMeta")},
    "ServiceAccount": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("secrets", "msgs:ObjectReference"),
        3: ("imagePullSecrets", "msgs:LocalObjectReference"),
        4: ("automountServiceAccountToken", "bool"),
    },
    "ObjectReference": {
        1: ("kind", "string"),
        2: ("namespace", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("resourceVersion", "string"),
        7: ("fieldPath", "string"),
    },
    "LocalObjectReference": {1: ("name", "string")},
    "SelfSubjectAccessReview": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:AccessReviewSpec")},
    "AccessReviewSpec": {
        1: ("resourceAttributes", "msg:ResourceAttributes"),
        2: ("nonResourceAttributes", "msg:NonResourceAttributes"),
    },
    "ResourceAttributes": {
        1: ("namespace", "string"),
        2: ("verb", "string"),
        3: ("group", "string"),
        4: ("version", "string"),
        5: ("resource", "string"),
        6: ("subresource", "string"),
        7: ("name", "string"),
    },
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "SelfSubjectRulesReview": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:RulesReviewSpec")},
    "RulesReviewSpec": {1: ("namespace", "string")},
}
KINDS = {
    "secrets": "Secret",
    "configmaps": "ConfigMap",
    "namespaces": "Namespace",
    "serviceaccounts": "ServiceAccount",
    "selfsubjectaccessreviews": "SelfSubjectAccessReview",
    "selfsubjectrulesreviews": "SelfSubjectRulesReview",
}


class ProtobufError(ValueError):
    """The body is not a protobuf envelope this server can read."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field; length-delimited values are bytes."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("truncated field")
            value, pos = data[pos : pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _text(value: Any) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a length-delimited field")
    return value.decode("utf-8", errors="replace")


def _message(name: str, data: bytes, depth: int = 0) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise ProtobufError("message nested too deeply")
    schema = SCHEMAS[name]
    out: dict[str, Any] = {}
    for number, wire, value in _fields(data):
        if number not in schema:
            continue
        field, kind = schema[number]
        if kind == "string":
            out[field] = _text(value)
        elif kind == "bytes":
            out[field] = value if isinstance(value, bytes) else b""
        elif kind in ("bool", "int"):
            if wire != 0:
                raise ProtobufError(f"{field}: expected a varint")
            out[field] = bool(value) if kind == "bool" else value
        elif kind == "strings":
            out.setdefault(field, []).append(_text(value))
        elif kind in ("map_ss", "map_sb"):
            entry = {n: v for n, _, v in _fields(value if isinstance(value, bytes) else b"")}
            key = _text(entry.get(1, b""))
            raw = entry.get(2, b"")
            out.setdefault(field, {})[key] = (
                _text(raw)
                if kind == "map_ss"
                else base64.b64encode(raw if isinstance(raw, bytes) else b"").decode()
            )
        elif kind.startswith("msg:"):
            out[field] = _message(kind[4:], value if isinstance(value, bytes) else b"", depth + 1)
        elif kind.startswith("msgs:"):
            out.setdefault(field, []).append(
                _message(kind[5:], value if isinstance(value, bytes) else b"", depth + 1)
            )
    return out


def decode(resource: str, body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object of `resource`."""
    kind = KINDS.get(resource)
    if kind is None:
        raise ProtobufError(f"protobuf bodies are not supported for {resource}")
    if not body.startswith(MAGIC):
        raise ProtobufError(
            "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
        )
    envelope = _message("Unknown", body[len(MAGIC) :])
    type_meta = envelope.get("typeMeta") or {}
    if envelope.get("contentEncoding"):
        raise ProtobufError(f"unsupported content encoding {envelope['contentEncoding']!r}")
    obj = _message(kind, envelope.get("raw") or b"")
    obj["kind"] = type_meta.get("kind") or kind
    obj["apiVersion"] = type_meta.get("apiVersion") or "v1"
    return obj
