"""The API server over real HTTPS, byte for byte: auth, discovery, CRUD, errors, watch streams."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kuberunner.cluster.api import discovery
from kuberunner.cluster.server import EmbeddedCluster
from tests.cluster.api_helpers import FakeKubelet, pod_manifest

PODS = "/api/v1/namespaces/default/pods"


class Api:
    def __init__(self, cluster: EmbeddedCluster, session: aiohttp.ClientSession) -> None:
        self.cluster = cluster
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> tuple[int, Any, str]:
        sent = {
            "Authorization": f"Bearer {self.cluster.token if token is None else token}",
            **(headers or {}),
        }
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        # No Content-Type unless the test sets one, as the official Python client does.
        async with self.session.request(
            method, self.cluster.url + path, data=data, headers=sent, skip_auto_headers=("Content-Type",)
        ) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text), resp.content_type
            except ValueError:
                return resp.status, text, resp.content_type

    async def stream(self, path: str, *, headers: dict[str, str] | None = None) -> list[bytes]:
        sent = {"Authorization": f"Bearer {self.cluster.token}", **(headers or {})}
        async with self.session.get(self.cluster.url + path, headers=sent) as resp:
            assert resp.status == 200
            assert resp.headers["Transfer-Encoding"] == "chunked"
            return [line async for line in resp.content]


@pytest.fixture
async def api(cluster: EmbeddedCluster) -> AsyncIterator[Api]:
    context = ssl.create_default_context(cadata=cluster.ca_pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield Api(cluster, session)


async def test_token_is_required_except_for_health_and_version(api: Api) -> None:
    status, body, ctype = await api.call("GET", PODS, token="wrong")
    assert (status, ctype) == (401, "application/json")
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    async with api.session.get(api.cluster.url + "/healthz") as resp:
        assert (resp.status, await resp.text()) == (200, "ok")
    async with api.session.get(api.cluster.url + "/version") as resp:
        version = await resp.json()
    assert (version["major"], version["minor"], version["platform"]) == ("1", "34", "linux/amd64")


async def test_discovery_documents(api: Api) -> None:
    _, versions, ctype = await api.call(
        "GET",
        "/api",
        headers={
            "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        },
    )
    assert ctype == "application/json"
    assert versions["versions"] == ["v1"]
    assert versions["serverAddressByClientCIDRs"][0]["serverAddress"] == f"127.0.0.1:{api.cluster.port}"
    groups = (await api.call("GET", "/apis"))[1]["groups"]
    assert [g["preferredVersion"]["groupVersion"] for g in groups] == ["authorization.k8s.io/v1"]
    _, resources, _ = await api.call("GET", "/api/v1")
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["pods"]["shortNames"] == ["po"]
    assert set(by_name["pods"]["verbs"]) >= {"create", "get", "list", "watch", "delete", "patch"}
    assert {
        "pods/log",
        "pods/exec",
        "pods/attach",
        "pods/status",
        "secrets",
        "configmaps",
        "events",
        "namespaces",
    } <= set(by_name)
    _, root, _ = await api.call("GET", "/openapi/v3")
    doc_url = root["paths"]["api/v1"]["serverRelativeURL"]
    _, doc, _ = await api.call("GET", doc_url)
    patch_op = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert patch_op["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert "fieldValidation" in [p["name"] for p in patch_op["parameters"]]


async def test_create_without_content_type_or_kind(api: Api, fake_kubelet: FakeKubelet) -> None:
    body = {"metadata": {"name": "cm1"}, "data": {"k": "v"}}
    status, cm, _ = await api.call("POST", "/api/v1/namespaces/default/configmaps", body=body)
    assert status == 201
    assert (cm["kind"], cm["apiVersion"], cm["metadata"]["namespace"]) == ("ConfigMap", "v1", "default")
    status, pod, _ = await api.call(
        "POST", PODS, body=pod_manifest("web"), headers={"Content-Type": "application/json"}
    )
    assert status == 201 and fake_kubelet.added == ["web"]
    status, listed, _ = await api.call("GET", PODS)
    assert listed["kind"] == "PodList"
    assert [p["metadata"]["name"] for p in listed["items"]] == ["web"]
    assert int(listed["metadata"]["resourceVersion"]) >= int(pod["metadata"]["resourceVersion"])


@pytest.mark.parametrize(
    ("method", "path", "raw", "code", "reason", "message"),
    [
        (
            "POST",
            PODS,
            b'{"metadata": {"name": ',
            400,
            "BadRequest",
            "couldn't get version/kind; json parse error: Expecting value: line 1 column 23 (char 22)",
        ),
        (
            "POST",
            PODS,
            b"[1]",
            400,
            "BadRequest",
            "couldn't get version/kind; json parse error: json: cannot "
            "unmarshal array into Go value of type struct",
        ),
        (
            "POST",
            PODS,
            b'{"kind": "Secret", "metadata": {"name": "x"}}',
            400,
            "BadRequest",
            "the kind in the data (Secret) does not match the expected kind (Pod) for this URL",
        ),
        (
            "POST",
            PODS,
            b'{"metadata": {"name": "x"}, "spec": {"containers": []}}',
            422,
            "Invalid",
            'Pod "x" is invalid: spec.containers: Required value',
        ),
        ("GET", PODS + "/nope", None, 404, "NotFound", 'pods "nope" not found'),
        (
            "GET",
            "/api/v1/namespaces/default/widgets",
            None,
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
        ("GET", PODS + "?labelSelector=a%20in%20()", None, 400, "BadRequest", "unable to parse requirement"),
        ("GET", PODS + "?watch=maybe", None, 400, "BadRequest", "invalid value for watch"),
        ("POST", "/api/v1/pods", b"{}", 405, "MethodNotAllowed", "the server does not allow this method"),
        ("GET", PODS + "/nope/log", None, 404, "NotFound", 'pods "nope" not found'),
    ],
    ids=[
        "truncated-json",
        "array-body",
        "wrong-kind",
        "no-containers",
        "missing-pod",
        "unknown-resource",
        "bad-selector",
        "bad-bool",
        "post-cluster-scope",
        "log-of-missing-pod",
    ],
)
async def test_errors_are_status_objects(
    api: Api, method: str, path: str, raw: bytes | None, code: int, reason: str, message: str
) -> None:
    status, body, ctype = await api.call(method, path, raw=raw)
    assert (status, ctype, body["kind"], body["status"], body["code"], body["reason"]) == (
        code,
        "application/json",
        "Status",
        "Failure",
        code,
        reason,
    )
    assert body["message"].startswith(message), body["message"]


async def test_unexpected_exception_is_a_500_status(api: Api) -> None:
    await api.call("POST", PODS, body=pod_manifest("web"))
    status, body, _ = await api.call("GET", PODS + "/web/attach?stdin=true")
    assert (status, body["reason"], body["message"]) == (
        500,
        "InternalError",
        "Internal error occurred: fake kubelet cannot attach",
    )


async def test_replace_with_stale_version_conflicts(api: Api) -> None:
    _, cm, _ = await api.call(
        "POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": "c"}}
    )
    path = "/api/v1/namespaces/default/configmaps/c"
    cm["data"] = {"k": "1"}
    status, updated, _ = await api.call("PUT", path, body=cm)
    assert status == 200 and updated["data"] == {"k": "1"}
    status, body, _ = await api.call("PUT", path, body=cm)
    assert (status, body["reason"]) == (409, "Conflict")


async def test_patch_flavours_over_http(api: Api) -> None:
    await api.call("POST", PODS, body=pod_manifest("web"))
    smp = {"spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]}}
    status, pod, _ = await api.call(
        "PATCH", PODS + "/web", body=smp, headers={"Content-Type": "application/strategic-merge-patch+json"}
    )
    assert status == 200
    assert pod["spec"]["containers"][0]["command"] == ["sleep", "3600"]
    assert pod["spec"]["containers"][0]["image"] == "busybox:1.37"
    status, body, _ = await api.call(
        "PATCH",
        PODS + "/web",
        body={"spec": {"restartPolicy": "Never"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert (status, body["reason"]) == (422, "Invalid")
    status, body, _ = await api.call("PATCH", PODS + "/web", body=smp, headers={"Content-Type": "text/plain"})
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")
    applied = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  k: v\n"
    path = "/api/v1/namespaces/default/configmaps/ssa?fieldManager=kubectl&force=false"
    status, cm, _ = await api.call(
        "PATCH", path, raw=applied, headers={"Content-Type": "application/apply-patch+yaml"}
    )
    assert (status, cm["data"]) == (201, {"k": "v"})


async def test_delete_answers(api: Api) -> None:
    await api.call("POST", "/api/v1/namespaces/default/secrets", body={"metadata": {"name": "s"}})
    status, body, _ = await api.call("DELETE", "/api/v1/namespaces/default/secrets/s")
    assert status == 200
    assert (body["kind"], body["status"], body["details"]["name"], body["details"]["kind"]) == (
        "Status",
        "Success",
        "s",
        "secrets",
    )
    await api.call("POST", PODS, body=pod_manifest("web"))
    status, pod, _ = await api.call("DELETE", PODS + "/web", body={"gracePeriodSeconds": 5})
    assert (status, pod["kind"], pod["metadata"]["deletionGracePeriodSeconds"]) == (200, "Pod", 5)


async def test_watch_stream_lines(api: Api) -> None:
    await api.call("POST", PODS, body=pod_manifest("a"))
    lines = await api.stream(PODS + "?watch=1&timeoutSeconds=1")
    assert all(line.endswith(b"\n") for line in lines)
    events = [json.loads(line) for line in lines]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a")]
    assert events[0]["object"]["status"]["phase"] == "Running"


async def test_watch_list_ends_initial_events_with_a_bookmark(api: Api) -> None:
    await api.call("POST", PODS, body=pod_manifest("a"))
    query = (
        "?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        "&timeoutSeconds=1&fieldSelector=metadata.name%3Da"
    )
    events = [json.loads(line) for line in await api.stream(PODS + query)]
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    mark = events[1]["object"]["metadata"]
    assert mark["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(mark["resourceVersion"]) >= int(events[0]["object"]["metadata"]["resourceVersion"])


async def test_too_old_resource_version_is_an_error_event_inside_a_200(api: Api) -> None:
    _, first, _ = await api.call(
        "POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": "c"}}
    )
    for i in range(1100):  # more than the history ring holds
        await api.cluster.store.create("configmaps", "default", {"metadata": {"name": f"c{i}"}})
    rv = first["metadata"]["resourceVersion"]
    lines = await api.stream(f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}")
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    assert event["object"]["message"].startswith(f"too old resource version: {rv} (")


async def test_table_for_kubectl_get(api: Api) -> None:
    await api.call("POST", PODS, body=pod_manifest("web"))
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    _, table, _ = await api.call("GET", PODS, headers={"Accept": accept})
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    assert table["rows"][0]["cells"][:4] == ["web", "1/1", "Running", "0"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


async def test_forbidden_subresource(tmp_path: Path) -> None:
    def factory(store: Any, state_dir: Path) -> FakeKubelet:
        return FakeKubelet(store)

    async with EmbeddedCluster(state_dir=tmp_path / "s", forbid={"pods/exec"}, kubelet_factory=factory) as c:
        context = ssl.create_default_context(cadata=c.ca_pem.decode())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            api = Api(c, session)
            await api.call("POST", PODS, body=pod_manifest("x"))
            status, body, _ = await api.call("GET", PODS + "/x/exec?command=ls&stdout=true")
            assert (status, body["reason"], body["details"]) == (
                403,
                "Forbidden",
                {"name": "x", "kind": "pods"},
            )
            assert body["message"] == (
                'pods "x" is forbidden: User "kuberunner" cannot create resource "pods/exec" '
                'in API group "" in the namespace "default"'
            )
            status, text, ctype = await api.call("GET", PODS + "/x/log")
            assert (status, text, ctype) == (200, "log of x\n", "text/plain")


async def test_status_subresource_changes_only_the_status(api: Api) -> None:
    await api.call("POST", PODS, body=pod_manifest("web"))
    patch = {"status": {"phase": "Failed"}, "metadata": {"labels": {"sneaky": "1"}}}
    status, pod, _ = await api.call(
        "PATCH", PODS + "/web/status", body=patch, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert (status, pod["status"]["phase"], pod["metadata"]["labels"]) == (200, "Failed", {"app": "web"})
    status, pod, _ = await api.call(
        "PATCH",
        PODS + "/web",
        body={"status": {"phase": "Running"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert (status, pod["status"]["phase"]) == (200, "Failed")


async def test_shutdown_ends_open_watches(tmp_path: Path) -> None:
    async with EmbeddedCluster(state_dir=tmp_path / "s", kubelet_factory=lambda s, d: FakeKubelet(s)) as c:
        context = ssl.create_default_context(cadata=c.ca_pem.decode())
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        resp = await session.get(c.url + PODS + "?watch=true", headers={"Authorization": f"Bearer {c.token}"})
        assert resp.status == 200
    try:
        # The stream ends cleanly once the server stops, instead of hanging the client or the shutdown.
        assert await asyncio.wait_for(resp.content.read(), 5) == b""
    finally:
        resp.release()
        await session.close()


async def test_openapi_v2_answers_kubectl_1_28(api: Api) -> None:
    """kubectl 1.27/1.28 fetch the protobuf Swagger document before `apply -f`/`create -f`."""
    proto = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    headers = {"Authorization": f"Bearer {api.cluster.token}", "Accept": f"{proto}, */*"}
    async with api.session.get(api.cluster.url + "/openapi/v2", headers=headers) as resp:
        assert (resp.status, resp.headers["Content-Type"]) == (200, proto.replace("@", "."))
        raw = await resp.read()
    version = discovery.OPENAPI_INFO_VERSION.encode()
    info = b"\x0a\x0aKubernetes\x12" + bytes([len(version)]) + version
    assert raw == b"\x0a\x032.0\x12" + bytes([len(info)]) + info
    status, body, _ = await api.call("GET", "/openapi/v2")
    assert (status, body["swagger"], body["info"]["title"]) == (200, "2.0", "Kubernetes")
