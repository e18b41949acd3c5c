"""HTTP handlers for the REST verbs on pods, secrets, configmaps, events and namespaces.

Each handler authorizes, decodes (`requests`), calls the store and encodes the answer: the object,
a `...List`, a meta.k8s.io Table when kubectl asks for one, or a chunked watch stream of one JSON
event per line. Errors are raised as `StatusError` and encoded by the app's middleware.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from kuberunner.cluster.api import managed, requests, tables, unknown, watch_stream
from kuberunner.cluster.api.authz import authorize
from kuberunner.cluster.api.kinds import RESOURCES
from kuberunner.cluster.api.state import STATE, ApiState
from kuberunner.cluster.status import StatusError

log = logging.getLogger(__name__)


def not_served() -> StatusError:
    return StatusError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> StatusError:
    return StatusError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {}
    )


def json_response(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    response = web.Response(status=status, text=json.dumps(body), content_type="application/json")
    for text in warnings or ():
        # RFC 7234 warn-code 299 with an unknown agent, as the API server writes it.
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        response.headers.add("Warning", f'299 - "{quoted}"')
    return response


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
        await _await_version(request, state)
        return _list(request, state, resource, namespace)
    if request.method == "POST":
        if namespace is None and RESOURCES[resource].namespaced:
            raise method_not_allowed()
        body = await requests.read_object(request, resource)
        warnings = unknown.check_body(resource, body, requests.field_validation(request))
        created = await state.store.create(
            resource, namespace, body, dry_run=requests.dry_run(request), manager=_manager(request)
        )
        return json_response(created, 201, warnings)
    if (
        request.method == "DELETE"
        and namespace is not None
        and "deletecollection" in RESOURCES[resource].verbs
    ):
        return await _delete_collection(request, state, resource, namespace)
    raise method_not_allowed()


async def _delete_collection(
    request: web.Request, state: ApiState, resource: str, namespace: str
) -> web.Response:
    """The matching objects are deleted one by one; the answer lists them as each delete left them."""
    labels, fields = requests.selectors(request, resource)
    grace, preconditions, dry_run = await requests.delete_options(request)
    items, _ = state.store.list_objects(resource, namespace, labels=labels, fields=fields)
    deleted = []
    for item in items:
        name = item["metadata"]["name"]
        if state.store.get(resource, namespace, name) is None:
            continue  # collected with an owner deleted earlier in this loop
        answer = await state.store.delete(
            resource, namespace, name, grace=grace, preconditions=preconditions, dry_run=dry_run
        )
        shown = answer if resource == "pods" else item
        shown.pop("kind", None)
        shown.pop("apiVersion", None)
        deleted.append(shown)
    kind = RESOURCES[resource].kind
    return json_response(
        {
            "kind": f"{kind}List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(state.store.resource_version)},
            "items": deleted,
        }
    )


async def namespace_object(request: web.Request) -> web.StreamResponse:
    """/api/v1/namespaces/{name}: the one cluster-scoped object route."""
    return await _object(request, "namespaces", "", request.match_info["name"])


async def node_object(request: web.Request) -> web.StreamResponse:
    """/api/v1/nodes/{name}: the server's own node, read-only."""
    if request.method != "GET":
        raise method_not_allowed()
    return await _object(request, "nodes", "", request.match_info["name"])


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
        warnings = unknown.check_body(resource, body, requests.field_validation(request))
        dry_run = requests.dry_run(request)
        replaced = await store.replace(
            resource, namespace, name, body, dry_run=dry_run, manager=_manager(request)
        )
        return json_response(replaced, 200, warnings)
    if request.method == "PATCH":
        patch_type, patch = await requests.read_patch(request)
        _check_apply(request, patch_type)
        patch_warnings: list[str] = []
        obj, created = await store.patch(
            resource,
            namespace,
            name,
            patch_type,
            patch,
            dry_run=requests.dry_run(request),
            field_validation=requests.field_validation(request),
            warnings=patch_warnings,
            manager=_manager(request),
        )
        return json_response(obj, 201 if created else 200, patch_warnings)
    if request.method == "DELETE":
        grace, preconditions, dry_run = await requests.delete_options(request)
        return json_response(
            await store.delete(
                resource, namespace, name, grace=grace, preconditions=preconditions, dry_run=dry_run
            )
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
        dry_run = requests.dry_run(request)
        return json_response(
            await store.replace(
                "pods",
                namespace,
                name,
                body,
                subresource="status",
                dry_run=dry_run,
                manager=_manager(request),
            )
        )
    if request.method == "PATCH":
        patch_type, patch = await requests.read_patch(request)
        _check_apply(request, patch_type)
        dry_run = requests.dry_run(request)
        obj, _ = await store.patch(
            "pods",
            namespace,
            name,
            patch_type,
            patch,
            subresource="status",
            dry_run=dry_run,
            manager=_manager(request),
        )
        return json_response(obj)
    raise method_not_allowed()


def _manager(request: web.Request) -> str:
    return managed.manager_name(request.query.get("fieldManager"), request.headers.get("User-Agent", ""))


FUTURE_VERSION_WAIT_SECONDS = 3.0
"""How long a real server waits for a list's resourceVersion to be reached before its 504."""
FUTURE_VERSION_POLL_SECONDS = 0.05


async def _await_version(request: web.Request, state: ApiState) -> None:
    """A list at a version not reached yet waits for it, up to 3 s, as a real server's cache does."""
    wanted = requests.resource_version(request)
    deadline = asyncio.get_running_loop().time() + FUTURE_VERSION_WAIT_SECONDS
    while wanted is not None and wanted > state.store.resource_version:
        if asyncio.get_running_loop().time() >= deadline:
            return
        await asyncio.sleep(FUTURE_VERSION_POLL_SECONDS)


def _check_exact(request: web.Request, current: int) -> None:
    """A list at a version this server has not reached (after `_await_version`) is a 504 with
    Retry-After, as the real one answers after waiting 3 s. resourceVersionMatch=Exact asks for the
    list as it was at that version; only the current state is kept, so an older one is gone (410),
    as past the real server's compaction."""
    wanted = requests.resource_version(request)
    if wanted is not None and wanted > current:
        raise StatusError(
            504,
            "Timeout",
            f"Timeout: Too large resource version: {wanted}, current: {current}",
            {
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            },
        )
    if request.query.get("resourceVersionMatch") == "Exact" and wanted is not None and wanted < current:
        raise StatusError(410, "Expired", "The resourceVersion for the provided list is too old.")


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
    _check_exact(request, rv)
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
