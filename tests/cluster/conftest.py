"""Fixtures for the API-server tests: a running `EmbeddedCluster` with a fake kubelet, and real kubectl;
for the fidelity tests, a `Target` on whichever tier the switch picks (`tier.py`).

The kubelet half keeps its own fixtures in `fixtures_kubelet.py`; helpers live in `api_helpers.py`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from real.cluster import REAL_KUBECONFIG

from kuberunner.cluster.contracts import ObjectStore
from kuberunner.cluster.server import EmbeddedCluster
from tests.cluster.api_helpers import FakeKubelet, Kubectl
from tests.cluster.old_kubectl import kubectl_1_28
from tests.cluster.tier import Target, embedded_target, real_target


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


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "target-home"
    home.mkdir()
    return home


@pytest.fixture
async def api_target(tmp_path: Path) -> AsyncIterator[Target]:
    """For API behaviour: on the embedded tier a cluster whose fake kubelet keeps a deleted pod
    until it is forced, as a real node does with `sleep` (PID 1 ignores SIGTERM) for the grace period."""
    if REAL_KUBECONFIG is not None:
        async for target in real_target(_home(tmp_path), os.environ["KUBERUNNER_TEST_IMAGE"]):
            yield target
        return
    fakes: list[FakeKubelet] = []

    def factory(store: ObjectStore, state_dir: Path) -> FakeKubelet:
        fakes.append(FakeKubelet(store, delete_delay=3600))
        return fakes[-1]

    async with EmbeddedCluster(state_dir=tmp_path / "state", kubelet_factory=factory) as cluster:
        yield await embedded_target(cluster, _home(tmp_path), fakes[0])


@pytest.fixture
async def node_target(tmp_path: Path) -> AsyncIterator[Target]:
    """For what containers do: on the embedded tier a cluster with its real kubelet."""
    if REAL_KUBECONFIG is not None:
        async for target in real_target(_home(tmp_path), os.environ["KUBERUNNER_TEST_IMAGE"]):
            yield target
        return
    async with EmbeddedCluster(state_dir=tmp_path / "state") as cluster:
        yield await embedded_target(cluster, _home(tmp_path), None)


@pytest.fixture(scope="session")
def kubectl_1_28_binary() -> Path:
    return kubectl_1_28()
