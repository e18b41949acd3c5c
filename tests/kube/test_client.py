"""REST calls and the pod watch against the loopback fake API server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kuberunner.kube.client import KubeClient
from kuberunner.kube.config import ClusterConfig
from kuberunner.kube.errors import (
    AlreadyExists,
    ApiStatusError,
    Expired,
    Forbidden,
    NotFound,
    StreamLost,
    Unauthorized,
)

from .conftest import TOKEN
from .fakeapi import FakeApi, WatchScript, status


def pod_body(name: str, **labels: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "build", "image": "alpine"}]}}


async def test_pod_create_get_list_delete_round_trip(client: KubeClient, fake: FakeApi) -> None:
    created = await client.create_pod("default", pod_body("job-1", job="1"))
    assert created["metadata"]["name"] == "job-1" and created["metadata"]["resourceVersion"]
    got = await client.get_pod("default", "job-1")
    assert got["spec"]["containers"][0]["image"] == "alpine"
    assert [p["metadata"]["name"] for p in await client.list_pods("default", "job=1")] == ["job-1"]
    await client.delete_pod("default", "job-1", grace_seconds=0)
    assert fake.requests[-1][:3] == ("DELETE", "/api/v1/namespaces/default/pods/job-1",
                                     {"gracePeriodSeconds": "0"})
    with pytest.raises(NotFound) as err:
        await client.get_pod("default", "job-1")
    assert (err.value.code, err.value.reason) == (404, "NotFound")
    assert err.value.message == 'pods "job-1" not found'


async def test_duplicate_create_is_already_exists(client: KubeClient) -> None:
    await client.create_pod("default", pod_body("dup"))
    with pytest.raises(AlreadyExists) as err:
        await client.create_pod("default", pod_body("dup"))
    assert err.value.code == 409


async def test_secret_create_merge_patch_delete(client: KubeClient, fake: FakeApi) -> None:
    await client.create_secret("default", {"metadata": {"name": "s1"}, "data": {"a": "YQ=="}})
    patched = await client.patch_secret("default", "s1", {"data": {"b": "Yg=="}})
    assert patched["data"] == {"a": "YQ==", "b": "Yg=="}
    assert fake.requests[-1][3] == "application/merge-patch+json"
    await client.delete_secret("default", "s1")
    with pytest.raises(NotFound):
        await client.delete_secret("default", "s1")


async def test_forbidden(client: KubeClient, fake: FakeApi) -> None:
    fake.forbid = True
    with pytest.raises(Forbidden) as err:
        await client.get_pod("default", "p1")
    assert err.value.code == 403


async def test_wrong_token_is_unauthorized(fake: FakeApi) -> None:
    async with await KubeClient.open(ClusterConfig(host=fake.url, token="wrong")) as c:
        with pytest.raises(Unauthorized):
            await c.get_pod("default", "p1")


async def test_non_status_error_body_still_gives_a_status_error(client: KubeClient) -> None:
    with pytest.raises(ApiStatusError) as err:
        await client.get_pod("default", "html502")
    assert err.value.code == 502 and "Bad Gateway" in err.value.message


async def test_token_file_is_read_again_for_each_request(fake: FakeApi, token_file: Path) -> None:
    path = token_file
    path.write_text("old-token\n")
    async with await KubeClient.open(ClusterConfig(host=fake.url, token_file=str(path))) as c:
        with pytest.raises(Unauthorized):
            await c.get_pod("default", "p1")
        path.write_text(TOKEN)  # the projected token rotated
        assert (await c.get_pod("default", "p1"))["metadata"]["name"] == "p1"
    assert [h for _, h in fake.auth_seen] == ["Bearer old-token", f"Bearer {TOKEN}"]


def event(kind: str, rv: int, phase: str = "Running") -> dict[str, object]:
    return {"type": kind, "object": {"metadata": {"name": "p1", "resourceVersion": str(rv)},
                                     "status": {"phase": phase}}}


async def test_watch_yields_events_and_ends_after_deleted(client: KubeClient, fake: FakeApi) -> None:
    fake.watch = WatchScript([event("ADDED", 5, "Pending"), event("MODIFIED", 6),
                              event("DELETED", 7, "Failed"), event("ADDED", 8)])
    seen = [(k, o["status"]["phase"]) async for k, o in client.watch_pod("default", "p1",
                                                                        resource_version="4")]
    assert seen == [("ADDED", "Pending"), ("MODIFIED", "Running"), ("DELETED", "Failed")]
    query = fake.requests[-1][2]
    assert query["fieldSelector"] == "metadata.name=p1" and query["resourceVersion"] == "4"
    assert query["timeoutSeconds"] == "290"  # the server ends quiet watches cleanly, before our idle limit


async def test_watch_error_event_410_is_expired(client: KubeClient, fake: FakeApi) -> None:
    expired = status(410, "Expired", "too old resource version")
    fake.watch = WatchScript([event("ADDED", 5), {"type": "ERROR", "object": expired}])
    seen = []
    with pytest.raises(Expired):
        async for kind, _ in client.watch_pod("default", "p1"):
            seen.append(kind)
    assert seen == ["ADDED"]


async def test_watch_stream_cut_is_stream_lost(client: KubeClient, fake: FakeApi) -> None:
    fake.watch = WatchScript([event("ADDED", 5)], then="cut")
    seen = []
    with pytest.raises(StreamLost):
        async for kind, _ in client.watch_pod("default", "p1"):
            seen.append(kind)
    assert seen == ["ADDED"]


async def test_watch_clean_end_returns(client: KubeClient, fake: FakeApi) -> None:
    fake.watch = WatchScript([event("MODIFIED", 9)], then="end")
    assert [json.dumps(o["metadata"]) async for _, o in client.watch_pod("default", "p1")] == [
        json.dumps({"name": "p1", "resourceVersion": "9"})]


async def test_watch_silent_past_idle_timeout_ends_cleanly(client: KubeClient, fake: FakeApi) -> None:
    fake.watch = WatchScript([event("ADDED", 5)], then="hang")
    started = time.monotonic()
    kinds = [k async for k, _ in client.watch_pod("default", "p1", idle_timeout=0.3)]
    assert kinds == ["ADDED"] and time.monotonic() - started < 2
