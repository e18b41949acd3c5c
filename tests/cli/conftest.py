"""`kuberunner exec` as a user runs it: a subprocess against a session cluster — the embedded cluster,
itself a subprocess, or on the real tier (tests/conftest.py) the real cluster the switch names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from real.cluster import NO_EXEC_RULES, REAL_KUBECONFIG, real_cluster, service_account_kubeconfig

from .execution import Cluster, Target, start_cluster
from .faults import ProxyThread


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if REAL_KUBECONFIG:
        yield real_cluster(Path(REAL_KUBECONFIG), tmp_path_factory.mktemp("cluster"))
        return
    yield from start_cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="session")
def cluster_without_exec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster whose RBAC, as many CI clusters', forbids pods/exec: on the real tier, a ServiceAccount
    whose Role grants pods, pods/attach, pods/log and secrets, and the runner uses its token."""
    root = tmp_path_factory.mktemp("cluster-no-exec")
    if REAL_KUBECONFIG:
        out = service_account_kubeconfig(
            Path(REAL_KUBECONFIG), "kuberunner-no-exec", NO_EXEC_RULES, root / "kubeconfig"
        )
        yield real_cluster(out, root)
        return
    yield from start_cluster(root, "--forbid", "pods/exec")


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
