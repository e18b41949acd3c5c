"""Discovery documents: /version, legacy /api and /apis, /api/v1, and a minimal OpenAPI v3.

kubectl needs these before it sends a single object request. The answers are plain JSON on purpose:
a modern kubectl asks for aggregated discovery first and falls back to the legacy documents when
the response's content type does not say `g=apidiscovery.k8s.io`. The OpenAPI v3 document carries
no schemas, only operations with `x-kubernetes-group-version-kind` and the `fieldValidation`
parameter, which is what `kubectl apply/create --validate=strict` checks before it lets the server
validate. Pure data builders.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kuberunner.cluster.api.kinds import RESOURCES

VERSION_INFO: dict[str, str] = {
    "major": "1",
    "minor": "34",
    "emulationMajor": "1",
    "emulationMinor": "34",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "33",
    "gitVersion": "v1.34.0-kuberunner",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.24.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}

OPENAPI_INFO_VERSION = f"{VERSION_INFO['major']}.{VERSION_INFO['minor']}"
"""What a real server puts in both OpenAPI documents' `info.version`: major.minor, not gitVersion."""

# Sub-resources the server routes, with the kind discovery reports and their verbs.
SUBRESOURCES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("pods/attach", "PodAttachOptions", ("create", "get")),
    ("pods/exec", "PodExecOptions", ("create", "get")),
    ("pods/log", "Pod", ("get",)),
    ("pods/status", "Pod", ("get", "patch", "update")),
)
_SINGULAR = {
    "pods": "pod",
    "secrets": "secret",
    "configmaps": "configmap",
    "events": "event",
    "namespaces": "namespace",
    "serviceaccounts": "serviceaccount",
    "nodes": "node",
}
AUTHORIZATION = "authorization.k8s.io"


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_groups() -> dict[str, Any]:
    version = {"groupVersion": f"{AUTHORIZATION}/v1", "version": "v1"}
    group = {"name": AUTHORIZATION, "versions": [version], "preferredVersion": version}
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}


def authorization_resources() -> dict[str, Any]:
    """authorization.k8s.io/v1: the two self reviews `kubectl auth can-i` posts."""
    review = {
        "name": "selfsubjectaccessreviews",
        "singularName": "selfsubjectaccessreview",
        "namespaced": False,
        "kind": "SelfSubjectAccessReview",
        "verbs": ["create"],
    }
    rules = {**review, "name": "selfsubjectrulesreviews", "singularName": "selfsubjectrulesreview"}
    rules["kind"] = "SelfSubjectRulesReview"
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{AUTHORIZATION}/v1",
        "resources": [review, rules],
    }


def api_resources() -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for info in RESOURCES.values():
        entry: dict[str, Any] = {
            "name": info.plural,
            "singularName": _SINGULAR[info.plural],
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": list(info.verbs),
        }
        if info.short_names:
            entry["shortNames"] = list(info.short_names)
        if info.plural == "pods":
            entry["categories"] = ["all"]
        resources.append(entry)
    for name, kind, verbs in SUBRESOURCES:
        resources.append(
            {"name": name, "singularName": "", "namespaced": True, "kind": kind, "verbs": list(verbs)}
        )
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": resources}


_FIELD_VALIDATION = {
    "name": "fieldValidation",
    "in": "query",
    "description": "fieldValidation instructs the server on how to handle objects in the request "
    "containing unknown or duplicate fields. Valid values are: Ignore, Warn and Strict.",
    "schema": {"type": "string", "uniqueItems": True},
}
_FIELD_MANAGER = {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}}


def _operation(kind: str, action: str, verb: str) -> dict[str, Any]:
    params = [_FIELD_VALIDATION, _FIELD_MANAGER] if verb in ("post", "put", "patch") else []
    return {
        "operationId": f"{verb}CoreV1{kind}",
        "parameters": params,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": kind},
    }


def openapi_v1() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for info in RESOURCES.values():
        base = (
            f"/api/v1/namespaces/{{namespace}}/{info.plural}" if info.namespaced else f"/api/v1/{info.plural}"
        )
        paths[base] = {
            "get": _operation(info.kind, "list", "list"),
            "post": _operation(info.kind, "post", "post"),
        }
        paths[base + "/{name}"] = {
            "get": _operation(info.kind, "get", "read"),
            "put": _operation(info.kind, "put", "replace"),
            "patch": _operation(info.kind, "patch", "patch"),
            "delete": _operation(info.kind, "delete", "delete"),
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": OPENAPI_INFO_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    }


def openapi_root() -> dict[str, Any]:
    digest = hashlib.sha512(json.dumps(openapi_v1(), sort_keys=True).encode()).hexdigest()[:128].upper()
    return {"paths": {"api/v1": {"serverRelativeURL": f"/openapi/v3/api/v1?hash={digest}"}}}


def _length_delimited(number: int, payload: bytes) -> bytes:
    """One protobuf field of wire type 2 (payloads here stay far below 128 bytes: 1-byte lengths)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def openapi_v2_document() -> dict[str, Any]:
    """A Swagger 2.0 document without paths or definitions: kubectl 1.27/1.28 fetch it before every
    `apply -f`, `create -f`, `replace` and `diff` and fail when it is missing; with no schema for a
    kind they fall back to their built-in types, and field validation stays the server's (v3)."""
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": OPENAPI_INFO_VERSION}}


def openapi_v2_protobuf() -> bytes:
    """`openapi_v2_document` as the gnostic openapi_v2.Document protobuf client-go asks for
    (swagger=1, info=2 with title=1 and version=2)."""
    info = _length_delimited(1, b"Kubernetes") + _length_delimited(2, OPENAPI_INFO_VERSION.encode())
    return _length_delimited(1, b"2.0") + _length_delimited(2, info)
