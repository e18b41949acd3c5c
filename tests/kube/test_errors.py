"""No aiohttp / kubernetes_asyncio / socket error escapes a public call: only `kube.errors` types."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kuberunner.kube import errors, streams
from kuberunner.kube.client import KubeClient
from kuberunner.kube.config import ClusterConfig

Call = Callable[[KubeClient], Awaitable[Any]]


async def drain(it: AsyncIterator[Any]) -> None:
    async for _ in it:
        pass


async def exec_wait(c: KubeClient) -> int:
    async with await streams.open_exec(c, namespace="d", pod="p", container="b", command=["true"],
                                       timeout=3) as s:
        return await s.wait()


PUBLIC_CALLS: dict[str, Call] = {
    "create_pod": lambda c: c.create_pod("d", {"metadata": {"name": "p"}}),
    "get_pod": lambda c: c.get_pod("d", "p"),
    "list_pods": lambda c: c.list_pods("d", "a=b"),
    "delete_pod": lambda c: c.delete_pod("d", "p", grace_seconds=0),
    "create_secret": lambda c: c.create_secret("d", {"metadata": {"name": "s"}}),
    "patch_secret": lambda c: c.patch_secret("d", "s", {"data": {}}),
    "delete_secret": lambda c: c.delete_secret("d", "s"),
    "watch_pod": lambda c: drain(c.watch_pod("d", "p")),
    "attach_write": lambda c: streams.attach_write(c, namespace="d", pod="p", container="b", data=b"x",
                                                   timeout=3),
    "exec": exec_wait,
    "follow_log": lambda c: drain(streams.follow_log(c, namespace="d", pod="p", container="b")),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("name", sorted(PUBLIC_CALLS))
async def test_connection_refused_is_api_unreachable_naming_the_host(name: str) -> None:
    host = f"http://127.0.0.1:{free_port()}"
    async with await KubeClient.open(ClusterConfig(host=host, token="t")) as c:
        with pytest.raises(errors.ApiUnreachable) as err:
            await PUBLIC_CALLS[name](c)
    assert host in str(err.value) and err.value.host == host
    assert isinstance(err.value.__cause__, OSError)  # translated with `raise ... from exc`


class GarbageServer:
    """Answers every connection with a fixed reply and closes: not HTTP, or a truncated answer."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(self.reply)
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


REPLIES = {
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n",
    "silence-then-close": b"",
    "truncated-body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\"",
    "not-json": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
}


@pytest.mark.parametrize("reply", sorted(REPLIES))
@pytest.mark.parametrize("name", sorted(PUBLIC_CALLS))
async def test_broken_servers_give_only_kube_errors(name: str, reply: str) -> None:
    # Passing is "returned normally or raised a KubeError"; anything else fails the test.
    async with GarbageServer(REPLIES[reply]) as host, await KubeClient.open(ClusterConfig(host=host)) as c:
        with contextlib.suppress(errors.KubeError):
            await PUBLIC_CALLS[name](c)
