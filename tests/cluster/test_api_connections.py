"""Connections to the API server: silent, slow and oversized clients are cut; authenticated streams live.

The cluster runs with a short header deadline and a small cap (`ConnectionLimits`), so every wait
here ends on the server closing a socket, never on a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kuberunner.cluster.api.connections import ConnectionGate, ConnectionLimits
from kuberunner.cluster.contracts import ObjectStore, RawObject
from kuberunner.cluster.server import EmbeddedCluster
from tests.cluster.api_helpers import FakeKubelet, pod_manifest

PODS = "/api/v1/namespaces/default/pods"
DEADLINE = 0.5
GUARD = 10.0
"""Failure bound of every wait: far above DEADLINE, so a pass never depends on the machine's speed."""


class EchoKubelet(FakeKubelet):
    """Attach is a WebSocket that echoes each binary message: a legitimately idle stream."""

    async def handle_attach(self, request: web.Request, pod: RawObject) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws


def make_cluster(tmp_path: Path, limits: ConnectionLimits) -> EmbeddedCluster:
    def factory(store: ObjectStore, state_dir: Path) -> FakeKubelet:
        return EchoKubelet(store)

    return EmbeddedCluster(state_dir=tmp_path / "state", kubelet_factory=factory, limits=limits)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    async with make_cluster(tmp_path, ConnectionLimits(header_timeout=DEADLINE)) as running:
        yield running


@pytest.fixture
async def capped(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    # A deadline far beyond the test, so only the cap can close anything.
    limits = ConnectionLimits(header_timeout=60, max_unauthenticated=4)
    async with make_cluster(tmp_path, limits) as running:
        yield running


def client_context(cluster: EmbeddedCluster) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=cluster.ca_pem.decode())


@pytest.fixture
async def session(cluster: EmbeddedCluster) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=client_context(cluster))
    headers = {"Authorization": f"Bearer {cluster.token}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as s:
        yield s


def gate_of(cluster: EmbeddedCluster) -> ConnectionGate:
    assert cluster.gate is not None
    return cluster.gate


async def open_tls(cluster: EmbeddedCluster) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS connection whose handshake has completed, so the server has accepted and counted it."""
    return await asyncio.open_connection("127.0.0.1", cluster.port, ssl=client_context(cluster))


async def seconds_until_closed(reader: asyncio.StreamReader, started: float) -> float:
    """Read until the server closes the connection; return the seconds since `started`."""
    async with asyncio.timeout(GUARD):
        try:
            while await reader.read(65536):
                pass
        except (ConnectionError, ssl.SSLError):
            pass
    return asyncio.get_running_loop().time() - started


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    async with asyncio.timeout(GUARD):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split()[1]), headers, body


# Closing clients that never complete a request head.


@pytest.mark.parametrize(
    ("tls", "sent"),
    [
        pytest.param(False, b"", id="tcp-silent"),
        pytest.param(False, b"\x16\x03\x01\x02\x00\x01", id="partial-client-hello"),
        pytest.param(True, b"", id="tls-silent"),
        pytest.param(
            True,
            b"GET /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bear",
            id="partial-request-head",
        ),
        pytest.param(
            True, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", id="idle-after-unauthenticated-request"
        ),
    ],
)
async def test_a_connection_without_a_complete_authenticated_head_is_closed_at_the_deadline(
    cluster: EmbeddedCluster, tls: bool, sent: bytes
) -> None:
    started = asyncio.get_running_loop().time()
    if tls:
        reader, writer = await open_tls(cluster)
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
    writer.write(sent)
    await writer.drain()
    elapsed = await seconds_until_closed(reader, started)
    writer.close()
    assert DEADLINE * 0.9 <= elapsed < GUARD
    gate = gate_of(cluster)
    assert (gate.expired, gate.unauthenticated) == (1, 0)


async def test_unauthenticated_requests_are_answered_before_the_deadline(cluster: EmbeddedCluster) -> None:
    reader, writer = await open_tls(cluster)
    writer.write(b"GET /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body = await read_response(reader)
    writer.close()
    assert (status, json.loads(body)["reason"]) == (401, "Unauthorized")


# Authenticated long-lived requests outlive the deadline.


async def deadline_passed(cluster: EmbeddedCluster) -> None:
    """Returns once a silent connection opened now has been closed: DEADLINE has gone by."""
    started = asyncio.get_running_loop().time()
    reader, writer = await open_tls(cluster)
    await seconds_until_closed(reader, started)
    writer.close()


async def test_a_watch_stays_open_past_the_deadline(
    cluster: EmbeddedCluster, session: aiohttp.ClientSession
) -> None:
    async with session.get(cluster.url + PODS + "?watch=true") as watch:
        assert watch.status == 200
        await deadline_passed(cluster)
        async with session.post(cluster.url + PODS, json=pod_manifest("late")) as created:
            assert created.status == 201
        async with asyncio.timeout(GUARD):
            event = json.loads(await watch.content.readline())
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "late")
    gate = gate_of(cluster)
    assert (gate.expired, gate.unauthenticated) == (1, 0)


async def test_an_authenticated_keepalive_connection_outlives_the_deadline(cluster: EmbeddedCluster) -> None:
    connector = aiohttp.TCPConnector(ssl=client_context(cluster), limit=1)
    headers = {"Authorization": f"Bearer {cluster.token}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async with session.get(cluster.url + PODS) as first:
            assert first.status == 200
        await deadline_passed(cluster)
        async with session.get(cluster.url + PODS) as second:
            assert second.status == 200
    gate = gate_of(cluster)
    # One connection for both requests, one for the silent probe.
    assert (gate.accepted, gate.expired) == (2, 1)


async def test_an_attach_websocket_stays_open_past_the_deadline(
    cluster: EmbeddedCluster, session: aiohttp.ClientSession
) -> None:
    async with session.post(cluster.url + PODS, json=pod_manifest("echo")) as created:
        assert created.status == 201
    async with session.ws_connect(cluster.url + PODS + "/echo/attach?stdin=true") as ws:
        await deadline_passed(cluster)
        await ws.send_bytes(b"\x00still here")
        async with asyncio.timeout(GUARD):
            message = await ws.receive()
    assert (message.type, message.data) == (aiohttp.WSMsgType.BINARY, b"\x00still here")


# The cap on connections that have not authenticated.


async def test_beyond_the_cap_new_connections_are_refused_while_authenticated_ones_work(
    capped: EmbeddedCluster,
) -> None:
    gate = gate_of(capped)
    headers = {"Authorization": f"Bearer {capped.token}"}

    def one_connection() -> aiohttp.TCPConnector:
        return aiohttp.TCPConnector(ssl=client_context(capped), limit=1)

    async with (
        aiohttp.ClientSession(connector=one_connection(), headers=headers) as rest,
        aiohttp.ClientSession(connector=one_connection(), headers=headers) as watcher,
        contextlib.AsyncExitStack() as silent,
    ):
        async with rest.get(capped.url + PODS) as listed:
            assert listed.status == 200
        async with watcher.get(capped.url + PODS + "?watch=true") as watch:
            assert watch.status == 200
            for _ in range(4):
                _, writer = await open_tls(capped)
                silent.callback(writer.close)
            assert gate.unauthenticated == 4
            with pytest.raises(OSError):
                await open_tls(capped)
            assert (gate.refused, gate.expired, gate.unauthenticated) == (1, 0, 4)
            # Both authenticated connections were opened before the cap filled and still serve.
            async with rest.post(capped.url + PODS, json=pod_manifest("after-cap")) as created:
                assert created.status == 201
            async with asyncio.timeout(GUARD):
                event = json.loads(await watch.content.readline())
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "after-cap")


# Request bodies.

LIMIT = 3 * 1024 * 1024


def too_large_status() -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"Request entity too large: limit is {LIMIT}",
        "reason": "RequestEntityTooLarge",
        "code": 413,
    }


async def test_a_declared_oversized_body_gets_413_before_it_is_sent(cluster: EmbeddedCluster) -> None:
    reader, writer = await open_tls(cluster)
    writer.write(
        f"POST {PODS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {cluster.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {LIMIT + 1}\r\n\r\n".encode()
    )
    status, headers, body = await read_response(reader)
    writer.close()
    assert (status, headers["content-type"], json.loads(body)) == (
        413,
        "application/json; charset=utf-8",
        too_large_status(),
    )
    assert headers["connection"] == "close"


async def test_a_chunked_body_is_cut_at_the_limit_with_413(cluster: EmbeddedCluster) -> None:
    reader, writer = await open_tls(cluster)
    writer.write(
        f"POST {PODS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {cluster.token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    chunk = b'{"a": "' + b"x" * (LIMIT - 8) + b'"}'
    writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    # No final chunk: the server must answer from the bytes it has, not wait for the end.
    status, _, body = await read_response(reader)
    writer.close()
    assert (status, json.loads(body)) == (413, too_large_status())
