"""Fixtures: a loopback fake API server (plain or TLS) and a client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kuberunner.kube.client import KubeClient
from kuberunner.kube.config import ClusterConfig

from .certs import Pki, make_pki
from .fakeapi import FakeApi

TOKEN = "s3cret"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def fake() -> AsyncIterator[FakeApi]:
    api = FakeApi(token=TOKEN)
    await api.start()
    api.add_pod("p1")
    try:
        yield api
    finally:
        await api.stop()


@pytest.fixture
async def client(fake: FakeApi) -> AsyncIterator[KubeClient]:
    async with await KubeClient.open(ClusterConfig(host=fake.url, token=TOKEN)) as c:
        yield c


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path
