"""Fixtures for the API-server tests: a running `EmbeddedCluster` with a fake kubelet, and real kubectl.

The kubelet half keeps its own fixtures in `fixtures_kubelet.py`; helpers live in `api_helpers.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kuberunner.cluster.contracts import ObjectStore
from kuberunner.cluster.server import EmbeddedCluster
from tests.cluster.api_helpers import FakeKubelet, Kubectl


@pytest.fixture
def fake_kubelets() -> list[FakeKubelet]:
    return []


@pytest.fixture
async def cluster(tmp_path: Path, fake_kubelets: list[FakeKubelet]) -> AsyncIterator[EmbeddedCluster]:
    def factory(store: ObjectStore, state_dir: Path) -> FakeKubelet:
        kubelet = FakeKubelet(store)
        fake_kubelets.append(kubelet)
        return kubelet

    async with EmbeddedCluster(state_dir=tmp_path / "state", kubelet_factory=factory) as running:
        yield running


@pytest.fixture
def fake_kubelet(cluster: EmbeddedCluster, fake_kubelets: list[FakeKubelet]) -> FakeKubelet:
    return fake_kubelets[0]


@pytest.fixture
def kubectl(cluster: EmbeddedCluster, tmp_path: Path) -> Kubectl:
    home = tmp_path / "home"
    home.mkdir()
    return Kubectl(cluster.kubeconfig_path, home)
