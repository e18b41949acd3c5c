"""The aiohttp application of the embedded API server: routes, authentication, error mapping.

Middleware order, outermost first: `errors` turns every `StatusError` into its JSON Status and
every other exception into a logged 500 InternalError Status (never a traceback on the wire);
`authenticate` demands the bearer token except on the health and version endpoints. The REST
verbs live in `rest`; pods/log, pods/attach and pods/exec are found here and handed to the kubelet.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from kuberunner.cluster import discovery, rest
from kuberunner.cluster.authz import authorize
from kuberunner.cluster.state import STATE, ApiState
from kuberunner.cluster.status import StatusError

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 32 * 1024 * 1024
"""Largest request body accepted; the real server's limit is 3 MiB per object, plus list/patch slack."""


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except StatusError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status == 404:
            return rest.not_served().response()
        if exc.status == 405:
            return rest.method_not_allowed().response()
        if exc.status == 413:
            return StatusError(
                413, "RequestEntityTooLarge", f"request entity too large: {exc.text}"
            ).response()
        if exc.status < 400:
            raise
        return StatusError(exc.status, "BadRequest", exc.text or exc.reason).response()
    except Exception as exc:
        log.exception("internal error serving %s %s", request.method, request.path_qs)
        return StatusError(
            500, "InternalError", f"Internal error occurred: {exc}", {"causes": [{"message": str(exc)}]}
        ).response()


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    log.debug(
        "request %s %s accept=%s content-type=%s",
        request.method,
        request.path_qs,
        request.headers.get("Accept", ""),
        request.headers.get("Content-Type", ""),
    )
    if request.path in state.open_paths:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    expected = f"Bearer {state.token}"
    if not hmac.compare_digest(header.encode(), expected.encode()):
        raise StatusError(401, "Unauthorized", "Unauthorized")
    return await handler(request)


async def version(request: web.Request) -> web.Response:
    return rest.json_response(discovery.VERSION_INFO)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok", content_type="text/plain")


async def api_versions(request: web.Request) -> web.Response:
    return rest.json_response(discovery.api_versions(request.app[STATE].server_address))


async def api_groups(request: web.Request) -> web.Response:
    return rest.json_response(discovery.api_groups())


async def api_resources(request: web.Request) -> web.Response:
    return rest.json_response(discovery.api_resources())


async def openapi_root(request: web.Request) -> web.Response:
    return rest.json_response(discovery.openapi_root())


async def openapi_v1(request: web.Request) -> web.Response:
    return rest.json_response(discovery.openapi_v1())


async def not_found(request: web.Request) -> web.Response:
    raise rest.not_served()


async def pod_stream(request: web.Request) -> web.StreamResponse:
    """pods/{log,attach,exec}: authorize, find the pod, hand the request to the kubelet."""
    state = request.app[STATE]
    sub = request.match_info["subresource"]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    if sub == "log":
        if request.method != "GET":
            raise rest.method_not_allowed()
        verb = "get"
    elif request.method in ("GET", "POST"):
        verb = "create"
    else:
        raise rest.method_not_allowed()
    authorize(state, verb=verb, resource="pods", subresource=sub, namespace=namespace, name=name)
    pod = state.store.require("pods", namespace, name)
    kubelet = state.kubelet
    if sub == "log":
        return await kubelet.handle_log(request, pod)
    if sub == "attach":
        return await kubelet.handle_attach(request, pod)
    return await kubelet.handle_exec(request, pod)


def make_app(state: ApiState, *, client_max_size: int = DEFAULT_MAX_BODY) -> web.Application:
    app = web.Application(middlewares=[errors, authenticate], client_max_size=client_max_size)
    app[STATE] = state
    r = app.router
    r.add_get("/version", version)
    for path in ("/healthz", "/livez", "/readyz"):
        r.add_get(path, health)
    r.add_get("/api", api_versions)
    r.add_get("/apis", api_groups)
    r.add_get("/api/v1", api_resources)
    r.add_get("/openapi/v3", openapi_root)
    r.add_get("/openapi/v3/api/v1", openapi_v1)
    r.add_get("/openapi/v2", not_found)
    ns = "/api/v1/namespaces/{namespace}"
    r.add_route("*", "/api/v1/{resource}", rest.collection)
    r.add_route("*", "/api/v1/namespaces/{name}", rest.namespace_object)
    r.add_route("*", ns + "/{resource}", rest.collection)
    r.add_route("*", ns + "/{resource}/{name}", rest.namespaced_object)
    r.add_route("*", ns + "/pods/{name}/status", rest.pod_status)
    r.add_route("*", ns + "/pods/{name}/{subresource:log|attach|exec}", pod_stream)
    return app
