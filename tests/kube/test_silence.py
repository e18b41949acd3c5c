"""Silent connections (open, every byte dropped) on the kube side: REST, the pod watch, and bounds.

The FaultProxy's silence sits between the client and the loopback fake API (or the embedded
cluster), so each test sees what a half-open connection does to the real client code.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from kuberunner.cluster.server import EmbeddedCluster
from kuberunner.faultproxy import FaultProxy, rewrite_kubeconfig
from kuberunner.kube import config, podwatch
from kuberunner.kube.client import KubeClient
from kuberunner.kube.config import ClusterConfig
from kuberunner.kube.errors import ApiUnreachable, BodyTooLarge, KubeError
from kuberunner.kube.podwatch import Liveness, judge_probe

from .conftest import TOKEN
from .fakeapi import FakeApi, WatchScript

FAST = Liveness(probe_every=0.3, probe_timeout=1.0, replace_after=30.0)


@pytest_asyncio.fixture
async def proxy(fake: FakeApi) -> AsyncIterator[FaultProxy]:
    port = int(fake.url.rsplit(":", 1)[1])
    async with FaultProxy(target_host="127.0.0.1", target_port=port) as p:
        yield p


# -- REST --------------------------------------------------------------------------------------------


async def test_rest_on_a_silent_pooled_connection_times_out_and_retries_on_a_new_one(
    fake: FakeApi, proxy: FaultProxy
) -> None:
    cfg = ClusterConfig(host=f"http://{proxy.address}", token=TOKEN)
    async with await KubeClient.open(cfg, request_timeout=1.0) as client:
        # Two calls at once leave two idle connections in the pool; both go silent.
        await asyncio.gather(client.get_pod("default", "p1"), client.get_pod("default", "p1"))
        assert proxy.silence_all() == 2
        started = time.monotonic()
        with pytest.raises(ApiUnreachable, match="timed out"):
            await client.get_pod("default", "p1")
        assert time.monotonic() - started < 2.0  # the call's total bound, not the socket's patience
        # The retry must not take the other silent pooled connection: it opens a new one.
        assert (await client.get_pod("default", "p1"))["metadata"]["name"] == "p1"
        assert time.monotonic() - started < 2.5
        assert proxy.connections_total == 3
        assert client.suspicions == 1


async def test_rest_answer_over_its_bound_is_refused(fake: FakeApi) -> None:
    fake.pods[("default", "p1")]["metadata"]["annotations"] = {"big": "x" * 5000}
    async with await KubeClient.open(ClusterConfig(host=fake.url, token=TOKEN), max_body=4096) as client:
        with pytest.raises(BodyTooLarge, match="4096"):
            await client.get_pod("default", "p1")


async def test_watch_event_over_its_bound_is_refused(client: KubeClient, fake: FakeApi) -> None:
    big = {
        "type": "MODIFIED",
        "object": {"metadata": {"name": "p1", "resourceVersion": "9", "x": "y" * 5000}},
    }
    fake.watch = WatchScript([big])
    with pytest.raises(BodyTooLarge, match="4096"):
        async for _ in client.watch_pod("default", "p1", max_event=4096):
            pass


async def test_watch_asks_for_bookmarks_and_hands_them_on(client: KubeClient, fake: FakeApi) -> None:
    mark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}
    fake.watch = WatchScript([mark])
    assert [k async for k, _ in client.watch_pod("default", "p1")] == []
    assert "allowWatchBookmarks" not in fake.requests[-1][2]
    assert [k async for k, _ in client.watch_pod("default", "p1", bookmarks=True)] == ["BOOKMARK"]
    assert fake.requests[-1][2]["allowWatchBookmarks"] == "true"


# -- the decision ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seen", "got", "quiet_for", "expected"),
    [
        ("5", "5", 1.0, "quiet"),
        ("5", "6", 1.0, "missed"),
        (None, "6", 1.0, "missed"),  # the watch never even sent the current state
        ("5", "5", 30.0, "stale"),
        ("5", "6", 30.0, "missed"),
    ],
)
def test_judge_probe(seen: str | None, got: str, quiet_for: float, expected: str) -> None:
    assert (
        judge_probe(seen=seen, got=got, quiet_for=quiet_for, liveness=Liveness(replace_after=30.0))
        == expected
    )


# -- the pod watch against the embedded cluster ------------------------------------------------------


class Retry:
    def __init__(self) -> None:
        self.failures: list[KubeError] = []

    def healthy(self) -> None:
        pass

    async def failed(self, exc: KubeError) -> None:
        self.failures.append(exc)
        await asyncio.sleep(0.05)


def sleeping_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "build", "image": "alpine", "command": ["sleep", "300"]}],
        },
    }


class Embedded:
    def __init__(self, direct: KubeClient, proxied: KubeClient, proxy: FaultProxy) -> None:
        self.direct, self.proxied, self.proxy = direct, proxied, proxy


@pytest_asyncio.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Embedded]:
    async with EmbeddedCluster() as cluster:
        cfg = await config.load_kubeconfig(cluster.kubeconfig_path)
        port = int(cfg.host.rsplit(":", 1)[1])
        async with FaultProxy(target_host="127.0.0.1", target_port=port) as proxy:
            rewrite_kubeconfig(cluster.kubeconfig_path, tmp_path / "kubeconfig", server=proxy.address)
            proxied_cfg = await config.load_kubeconfig(tmp_path / "kubeconfig")
            async with await KubeClient.open(cfg) as direct, await KubeClient.open(proxied_cfg) as proxied:
                yield Embedded(direct, proxied, proxy)


async def events_until(it: AsyncIterator[podwatch.Event], want: str, log: list[tuple[str, str]]) -> float:
    async for kind, pod in it:
        log.append((kind, str(pod["metadata"].get("resourceVersion"))))
        if want in (kind, pod.get("status", {}).get("phase")):
            return time.monotonic()
    raise AssertionError(f"the watch ended before {want}: {log}")


async def test_changes_behind_a_silent_watch_arrive_by_the_probe_once_each(embedded: Embedded) -> None:
    namespace = embedded.direct.namespace
    await embedded.direct.create_pod(namespace, sleeping_pod("quiet-1"))
    retry = Retry()
    events = podwatch.follow_pod(
        embedded.proxied, namespace=namespace, name="quiet-1", retry=retry, liveness=FAST
    )
    seen: list[tuple[str, str]] = []
    async with asyncio.timeout(30):
        await events_until(events, "Running", seen)
        assert embedded.proxy.silence_all() >= 1
        await embedded.direct.delete_pod(namespace, "quiet-1")
        deleted_at = time.monotonic()
        noticed = await events_until(events, "DELETED", seen)
    await events.aclose()
    # One GET interval, plus one probe timing out on a silent pooled connection, plus the retry.
    assert noticed - deleted_at < FAST.probe_every + FAST.probe_timeout + 1.0, seen
    versions = [rv for _, rv in seen]
    assert len(versions) == len(set(versions)), seen  # nothing repeated
    assert seen[-1][0] == "DELETED"


async def test_a_healthy_quiet_watch_is_kept_and_probes_reuse_the_pool(embedded: Embedded) -> None:
    namespace = embedded.direct.namespace
    await embedded.direct.create_pod(namespace, sleeping_pod("quiet-2"))
    events = podwatch.follow_pod(
        embedded.proxied, namespace=namespace, name="quiet-2", retry=Retry(), liveness=FAST
    )
    seen: list[tuple[str, str]] = []
    async with asyncio.timeout(30):
        await events_until(events, "Running", seen)
        opened = embedded.proxy.connections_total
        nothing = asyncio.ensure_future(events.__anext__())
        done, _ = await asyncio.wait({nothing}, timeout=FAST.probe_every * 5)
        assert not done  # a quiet pod: no event, no end
        nothing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await nothing
    # Five probes over the one pooled connection; the watch was not replaced.
    assert embedded.proxy.connections_total - opened <= 1
    assert len({rv for _, rv in seen}) == len(seen), seen
