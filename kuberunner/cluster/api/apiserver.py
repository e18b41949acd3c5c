"""The aiohttp application of the embedded API server: routes, authentication, error mapping.

Middleware order, outermost first: `connections.watch_heads` restarts the header deadline of a
connection that has not authenticated yet; `errors` turns every `StatusError` into its JSON Status
and every other exception into a logged 500 InternalError Status (never a traceback on the wire);
`authenticate` demands the bearer token except on the health and version endpoints, and tells the
connection gate when a connection has shown it. The REST verbs live in `rest`; pods/log,
pods/attach and pods/exec are found here and handed to the kubelet.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from kuberunner.cluster.api import access_review, connections, discovery, requests, rest
from kuberunner.cluster.api.authz import authorize
from kuberunner.cluster.api.state import STATE, ApiState
from kuberunner.cluster.status import StatusError

log = logging.getLogger(__name__)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except StatusError as exc:
        response = exc.response()
        if exc.code == 413:
            # The rest of the body is still on the wire; closing beats reading it to drain it.
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status == 404:
            return rest.not_served().response()
        if exc.status == 405:
            return rest.method_not_allowed().response()
        if exc.status == 413:
            response = requests.too_large().response()
            response.force_close()
            return response
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
    header = request.headers.get("Authorization", "")
    expected = f"Bearer {state.token}"
    if hmac.compare_digest(header.encode(), expected.encode()):
        connections.trust(request)
    elif request.path not in state.open_paths:
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


async def authorization_resources(request: web.Request) -> web.Response:
    return rest.json_response(discovery.authorization_resources())


async def openapi_root(request: web.Request) -> web.Response:
    return rest.json_response(discovery.openapi_root())


async def openapi_v1(request: web.Request) -> web.Response:
    return rest.json_response(discovery.openapi_v1())


OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
OPENAPI_V2_PROTOBUF_ASKED = (
    "com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "com.github.proto-openapi.spec.v2.v1.0+protobuf",
)
"""What clients ask for (kubectl 1.27/1.28 the `@` form, which is no valid media type); the answer
is always labelled with the `.` form, as a real server does, so Go's mime parser accepts it."""


async def openapi_v2(request: web.Request) -> web.Response:
    accept = request.headers.get("Accept", "")
    if any(f"application/{subtype}" in accept for subtype in OPENAPI_V2_PROTOBUF_ASKED):
        response = web.Response(body=discovery.openapi_v2_protobuf())
        response.headers["Content-Type"] = OPENAPI_V2_PROTOBUF
    else:
        response = rest.json_response(discovery.openapi_v2_document())
    response.headers["Vary"] = "Accept"
    return response


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


def make_app(state: ApiState) -> web.Application:
    # aiohttp's own limit is a second line behind `requests.read_body`, for any other body reader.
    app = web.Application(
        middlewares=[connections.watch_heads, errors, authenticate], client_max_size=requests.MAX_BODY
    )
    app[STATE] = state
    r = app.router
    r.add_get("/version", version)
    for path in ("/healthz", "/livez", "/readyz"):
        r.add_get(path, health)
    r.add_get("/api", api_versions)
    r.add_get("/apis", api_groups)
    r.add_get("/api/v1", api_resources)
    r.add_get("/apis/authorization.k8s.io/v1", authorization_resources)
    authorization = "/apis/authorization.k8s.io/v1/"
    r.add_route("*", authorization + "selfsubjectaccessreviews", access_review.self_subject_access_review)
    r.add_route("*", authorization + "selfsubjectrulesreviews", access_review.self_subject_rules_review)
    r.add_get("/openapi/v3", openapi_root)
    r.add_get("/openapi/v3/api/v1", openapi_v1)
    r.add_get("/openapi/v2", openapi_v2)
    ns = "/api/v1/namespaces/{namespace}"
    r.add_route("*", "/api/v1/{resource}", rest.collection)
    r.add_route("*", "/api/v1/namespaces/{name}", rest.namespace_object)
    r.add_route("*", "/api/v1/nodes/{name}", rest.node_object)
    r.add_route("*", ns + "/{resource}", rest.collection)
    r.add_route("*", ns + "/{resource}/{name}", rest.namespaced_object)
    r.add_route("*", ns + "/pods/{name}/status", rest.pod_status)
    r.add_route("*", ns + "/pods/{name}/{subresource:log|attach|exec}", pod_stream)
    return app
