"""`kuberunner exec` as a user runs it: a subprocess against the embedded cluster, itself a subprocess."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .execution import Cluster, Target, start_cluster
from .faults import ProxyThread


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="session")
def cluster_without_exec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster whose RBAC, as many CI clusters', forbids pods/exec."""
    yield from start_cluster(tmp_path_factory.mktemp("cluster-no-exec"), "--forbid", "pods/exec")


@pytest.fixture(params=["file", "kubelet"])
def target(request: pytest.FixtureRequest) -> Target:
    """Each log transport on the cluster it is meant for: `kubelet` where pods/exec is forbidden."""
    if request.param == "file":
        return Target(request.getfixturevalue("cluster"), ())
    return Target(request.getfixturevalue("cluster_without_exec"), ("--log-transport", "kubelet"))


@pytest.fixture
def proxied(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, ProxyThread]]:
    """The cluster as seen through a fault proxy: the Cluster's kubeconfig points at the proxy."""
    out = tmp_path_factory.mktemp("proxy") / "kubeconfig"
    thread = ProxyThread(cluster.kubeconfig, out)
    yield Cluster(out, cluster.state_dir, cluster.process), thread
    thread.close()
