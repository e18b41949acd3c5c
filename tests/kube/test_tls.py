"""TLS: the cluster CA and the client certificate are used on REST, WebSocket and log connections."""

from __future__ import annotations

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
