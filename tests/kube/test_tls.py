"""TLS: the cluster CA and the client certificate are used on REST, WebSocket and log connections."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from kuberunner.kube import streams
from kuberunner.kube.client import KubeClient
from kuberunner.kube.config import ClusterConfig
from kuberunner.kube.errors import ApiUnreachable, CertificateRejected, KubeConfigError

from .certs import Pki, make_pki
from .conftest import TOKEN
from .fakeapi import FakeApi, LogScript


@pytest.fixture
async def tls_fake(pki: Pki) -> AsyncIterator[FakeApi]:
    api = FakeApi(token=TOKEN, pki=pki, require_client_cert=True)
    await api.start()
    api.add_pod("p1")
    api.logs["p1"] = LogScript([b"log bytes\n"])
    try:
        yield api
    finally:
        await api.stop()


async def use_every_transport(cfg: ClusterConfig) -> None:
    async with await KubeClient.open(cfg) as c:
        assert (await c.get_pod("default", "p1"))["metadata"]["name"] == "p1"
        await streams.attach_write(c, namespace="default", pod="p1", container="build", data=b"x\n")
        async with await streams.open_exec(
            c, namespace="default", pod="p1", container="build", command=["exit", "0"]
        ) as s:
            assert await s.wait() == 0
        body = b"".join(
            [x async for x in streams.follow_log(c, namespace="default", pod="p1", container="build")]
        )
        assert body == b"log bytes\n"


async def test_ca_file_client_cert_files_and_token_on_all_transports(tls_fake: FakeApi, pki: Pki) -> None:
    cfg = ClusterConfig(
        host=tls_fake.url,
        ca_file=str(pki.ca_file),
        cert_file=str(pki.client_cert),
        key_file=str(pki.client_key),
        token=TOKEN,
    )
    await use_every_transport(cfg)
    assert tls_fake.auth_seen == [
        ("rest", f"Bearer {TOKEN}"),
        ("ws", f"Bearer {TOKEN}"),
        ("ws", f"Bearer {TOKEN}"),
        ("log", f"Bearer {TOKEN}"),
    ]
    assert tls_fake.client_certs == ["runner"] * 4
    assert bytes(tls_fake.stdin["p1"]) == b"x\n"


async def test_inline_ca_and_client_cert_data(tls_fake: FakeApi, pki: Pki) -> None:
    cfg = ClusterConfig(
        host=tls_fake.url,
        ca_data=pki.ca_pem,
        cert_data=pki.client_cert_pem,
        key_data=pki.client_key_pem,
        token=TOKEN,
    )
    await use_every_transport(cfg)
    assert tls_fake.client_certs == ["runner"] * 4


async def test_server_not_signed_by_the_configured_ca_is_a_certificate_error_everywhere(
    tls_fake: FakeApi, pki: Pki, tmp_path: Path
) -> None:
    # Not ApiUnreachable: that one is retried for minutes, and no retry fixes a wrong CA.
    other = make_pki(tmp_path / "other", ca_name="someone-else")
    cfg = ClusterConfig(
        host=tls_fake.url,
        ca_file=str(other.ca_file),
        cert_file=str(pki.client_cert),
        key_file=str(pki.client_key),
        token=TOKEN,
    )
    async with await KubeClient.open(cfg) as c:
        with pytest.raises(
            CertificateRejected, match=r"certificate verification of the API server https://127\.0\.0\.1"
        ):
            await c.get_pod("default", "p1")
        with pytest.raises(CertificateRejected):
            await streams.attach_write(c, namespace="default", pod="p1", container="build", data=b"x")
        with pytest.raises(CertificateRejected):
            await streams.open_exec(c, namespace="default", pod="p1", container="build", command=["true"])
        with pytest.raises(CertificateRejected):
            [x async for x in streams.follow_log(c, namespace="default", pod="p1", container="build")]
        with pytest.raises(CertificateRejected):
            [x async for x in c.watch_pod("default", "p1")]
    assert tls_fake.auth_seen == []  # nothing, not even the token, went to an unverified server


async def test_missing_client_cert_is_refused(tls_fake: FakeApi, pki: Pki) -> None:
    cfg = ClusterConfig(host=tls_fake.url, ca_file=str(pki.ca_file), token=TOKEN)
    async with await KubeClient.open(cfg) as c:
        with pytest.raises(ApiUnreachable):
            await c.get_pod("default", "p1")


async def test_verify_ssl_off_accepts_an_unknown_ca(tls_fake: FakeApi, pki: Pki) -> None:
    cfg = ClusterConfig(
        host=tls_fake.url,
        verify_ssl=False,
        cert_file=str(pki.client_cert),
        key_file=str(pki.client_key),
        token=TOKEN,
    )
    async with await KubeClient.open(cfg) as c:
        assert (await c.get_pod("default", "p1"))["metadata"]["name"] == "p1"


async def test_unusable_key_material_is_a_config_error(pki: Pki, tmp_path: Path) -> None:
    base = ClusterConfig(host="https://127.0.0.1:1", token=TOKEN)
    with pytest.raises(KubeConfigError, match="client certificate"):
        await KubeClient.open(replace(base, cert_data=b"not pem", key_data=b"not pem"))
    with pytest.raises(KubeConfigError, match="CA"):
        await KubeClient.open(replace(base, ca_data=b"-----BEGIN CERTIFICATE-----\nxx\n"))


class MuteAfterResponse(threading.Thread):
    """A TLS server that answers one request with a watch that never ends, then feeds no byte more
    to TLS, as an API server too busy to read: the client's close_notify is never answered.
    `dropped` is set once the client's side of the TCP connection is gone."""

    def __init__(self, pki: Pki, body: bytes) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        self.body = body
        self.dropped = threading.Event()

    def run(self) -> None:
        with self.listener:
            conn, _ = self.listener.accept()
        conn.settimeout(30)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.context.wrap_bio(incoming, outgoing, server_side=True)
        request = b""
        with conn:
            while b"\r\n\r\n" not in request:
                try:
                    tls.do_handshake()
                    request += tls.read(65536)
                except ssl.SSLWantReadError:
                    conn.sendall(outgoing.read())
                    incoming.write(conn.recv(65536))
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            tls.write(head + f"{len(self.body):x}\r\n".encode() + self.body + b"\r\n")
            conn.sendall(outgoing.read())
            try:
                while conn.recv(65536):
                    pass  # the close_notify, read off the wire and never answered
            except ConnectionResetError:
                pass
            self.dropped.set()


async def test_a_closed_stream_drops_its_connection_though_the_server_never_answers_the_tls_close(
    pki: Pki,
) -> None:
    event = b'{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"p1"}}}\n'
    server = MuteAfterResponse(pki, event)
    server.start()
    cfg = ClusterConfig(host=f"https://127.0.0.1:{server.port}", ca_file=str(pki.ca_file), token=TOKEN)
    async with await KubeClient.open(cfg) as client:
        watch = client.watch_objects("default", "pods", "metadata.name=p1", what="pod p1")
        kind, _ = await anext(watch)
        assert kind == "ADDED"
        await watch.aclose()
    # Left to a graceful TLS shutdown, the socket stayed open 30 s, then until garbage collection.
    assert await asyncio.to_thread(server.dropped.wait, 10)
    server.join(timeout=10)
