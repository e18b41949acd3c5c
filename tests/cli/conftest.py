"""`kuberunner exec` as a user runs it: a subprocess against the embedded cluster, itself a subprocess."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .execution import BIN, Cluster, Target
from .faults import ProxyThread


def _start_cluster(root: Path, *extra: str) -> Iterator[Cluster]:
    kubeconfig = root / "kubeconfig"
    log = (root / "cluster.log").open("wb")
    process = subprocess.Popen(
        [
            str(BIN),
            "cluster",
            "--kubeconfig-out",
            str(kubeconfig),
            "--state-dir",
            str(root / "state"),
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not kubeconfig.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the embedded cluster did not start: " + (root / "cluster.log").read_text())
        time.sleep(0.05)
    yield Cluster(kubeconfig, root / "state", process)
    process.terminate()
    process.wait(timeout=60)
    log.close()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from _start_cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="session")
def cluster_without_exec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster whose RBAC, as many CI clusters', forbids pods/exec."""
    yield from _start_cluster(tmp_path_factory.mktemp("cluster-no-exec"), "--forbid", "pods/exec")


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
