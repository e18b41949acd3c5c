"""Every connection to the API server carries short TCP keepalive, read back from the kernel (issue 17)."""

from __future__ import annotations

import pytest
from aiohttp import web

from kuberunner.kube import streams
from kuberunner.kube.client import KubeClient
from kuberunner.kube.config import ClusterConfig
from kuberunner.kube.sockets import DEFAULT_KEEPALIVE

from .conftest import TOKEN
from .fakeapi import FakeApi, WatchScript
from .socket_options import KeepaliveOptions, options_of_own_socket

EXPECTED = KeepaliveOptions(
    1,
    DEFAULT_KEEPALIVE.idle,
    DEFAULT_KEEPALIVE.interval,
    DEFAULT_KEEPALIVE.count,
    DEFAULT_KEEPALIVE.user_timeout_ms,
)


async def test_rest_watch_log_and_exec_connections_read_back_short_keepalive(
    fake: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, KeepaliveOptions] = {}
    check = fake._check

    def checking(request: web.Request, kind: str) -> web.Response | None:
        # The client awaits this very request, so its socket is open and findable now.
        assert request.transport is not None
        what = "watch" if request.query.get("watch") else kind
        seen[what] = options_of_own_socket(request.transport.get_extra_info("peername")[:2])
        return check(request, kind)

    monkeypatch.setattr(fake, "_check", checking)
    fake.watch = WatchScript([])
    async with await KubeClient.open(ClusterConfig(host=fake.url, token=TOKEN)) as client:
        await client.get_pod("default", "p1")
        assert [k async for k, _ in client.watch_pod("default", "p1")] == []
        async with await streams.open_exec(
            client, namespace="default", pod="p1", container="build", command=["exit", "0"], timeout=5
        ) as session:
            assert await session.wait() == 0
    assert len(seen) == 3, seen  # a REST call, a watch, a WebSocket
    assert set(seen.values()) == {EXPECTED}, seen
