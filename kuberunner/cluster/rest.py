"""HTTP handlers for the REST verbs on pods, secrets, configmaps, events and namespaces.

Each handler authorizes, decodes (`requests`), calls the store and encodes the answer: the object,
a `...List`, a meta.k8s.io Table when kubectl asks for one, or a chunked watch stream of one JSON
event per line. Errors are raised as `StatusError` and encoded by the app's middleware.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from kuberunner.cluster import requests, tables, watch_stream
from kuberunner.cluster.authz import authorize
from kuberunner.cluster.kinds import RESOURCES
from kuberunner.cluster.state import STATE, ApiState
from kuberunner.cluster.status import StatusError

log = logging.getLogger(__name__)


def not_served() -> StatusError:
    return StatusError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> StatusError:
    return StatusError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {}
    )


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _resource(request: web.Request, *, namespaced_route: bool) -> str:
    resource = request.match_info["resource"]
    info = RESOURCES.get(resource)
    if info is None or (namespaced_route and not info.namespaced):
        raise not_served()
    return resource


def _verb(request: web.Request, named: bool) -> str:
    if request.method == "GET":
        if named:
            return "get"
        return "watch" if requests.query_bool(request, "watch") else "list"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if named else "deletecollection",
    }.get(request.method, request.method.lower())


async def collection(request: web.Request) -> web.StreamResponse:
    """/api/v1/{resource} and /api/v1/namespaces/{namespace}/{resource}."""
    state = request.app[STATE]
    namespace = request.match_info.get("namespace")
    resource = _resource(request, namespaced_route=namespace is not None)
    verb = _verb(request, named=False)
    authorize(state, verb=verb, resource=resource, namespace=namespace)
    if request.method == "GET":
        if verb == "watch":
            return await watch_stream.serve(request, state, resource, namespace)
        return _list(request, state, resource, namespace)
    if request.method == "POST":
        if namespace is None and RESOURCES[resource].namespaced:
            raise method_not_allowed()
        body = await requests.read_object(request, resource)
        created = await state.store.create(resource, namespace, body, dry_run=requests.dry_run(request))
        return json_response(created, 201)
    raise method_not_allowed()


async def namespace_object(request: web.Request) -> web.StreamResponse:
    """/api/v1/namespaces/{name}: the one cluster-scoped object route."""
    return await _object(request, "namespaces", "", request.match_info["name"])


async def namespaced_object(request: web.Request) -> web.StreamResponse:
    resource = _resource(request, namespaced_route=True)
    return await _object(request, resource, request.match_info["namespace"], request.match_info["name"])


async def _object(request: web.Request, resource: str, namespace: str, name: str) -> web.StreamResponse:
    state = request.app[STATE]
    verb = _verb(request, named=True)
    authorize(state, verb=verb, resource=resource, namespace=namespace or None, name=name)
    store = state.store
    if request.method == "GET":
        return _one(request, resource, store.require(resource, namespace, name))
    if request.method == "PUT":
        body = await requests.read_object(request, resource)
        return json_response(await store.replace(resource, namespace, name, body))
    if request.method == "PATCH":
        patch_type, patch = await requests.read_patch(request)
        _check_apply(request, patch_type)
        obj, created = await store.patch(resource, namespace, name, patch_type, patch)
        return json_response(obj, 201 if created else 200)
    if request.method == "DELETE":
        grace, preconditions = await requests.delete_options(request)
        return json_response(
            await store.delete(resource, namespace, name, grace=grace, preconditions=preconditions)
        )
    raise method_not_allowed()


async def pod_status(request: web.Request) -> web.StreamResponse:
    """/api/v1/namespaces/{namespace}/pods/{name}/status."""
    state = request.app[STATE]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    verb = _verb(request, named=True)
    authorize(state, verb=verb, resource="pods", subresource="status", namespace=namespace, name=name)
    store = state.store
    if request.method == "GET":
        return json_response(store.require("pods", namespace, name))
    if request.method == "PUT":
        body = await requests.read_object(request, "pods")
        return json_response(await store.replace("pods", namespace, name, body, subresource="status"))
    if request.method == "PATCH":
        patch_type, patch = await requests.read_patch(request)
        _check_apply(request, patch_type)
        obj, _ = await store.patch("pods", namespace, name, patch_type, patch, subresource="status")
        return json_response(obj)
    raise method_not_allowed()


def _check_apply(request: web.Request, patch_type: str) -> None:
    if patch_type == "application/apply-patch+yaml" and not request.query.get("fieldManager"):
        raise StatusError(
            422,
            "Invalid",
            'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
            "is required for apply patch",
        )


def _one(request: web.Request, resource: str, obj: dict[str, Any]) -> web.Response:
    if tables.wants_table(request.headers.get("Accept", "")):
        return json_response(
            tables.table(
                resource,
                [obj],
                resource_version=obj["metadata"]["resourceVersion"],
                include_object=request.query.get("includeObject", "Metadata"),
            )
        )
    return json_response(obj)


def _list(request: web.Request, state: ApiState, resource: str, namespace: str | None) -> web.Response:
    labels, fields = requests.selectors(request, resource)
    items, rv = state.store.list_objects(resource, namespace, labels=labels, fields=fields)
    if tables.wants_table(request.headers.get("Accept", "")):
        return json_response(
            tables.table(
                resource,
                items,
                resource_version=str(rv),
                include_object=request.query.get("includeObject", "Metadata"),
            )
        )
    for item in items:
        # Items of a real list carry no TypeMeta; the list does.
        item.pop("kind", None)
        item.pop("apiVersion", None)
    kind = RESOURCES[resource].kind
    return json_response(
        {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}, "items": items}
    )
