"""The runner's tests: a session cluster (a subprocess, as in tests/cli), a git repository, a fake GitLab."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cli.execution import BIN, Cluster

from .fake_gitlab import FakeGitLab
from .git_http import make_repository


@pytest.fixture(scope="session")
def gitlab_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("gitlab-cluster")
    kubeconfig = root / "kubeconfig"
    log = (root / "cluster.log").open("wb")
    process = subprocess.Popen(
        [str(BIN), "cluster", "--kubeconfig-out", str(kubeconfig), "--state-dir", str(root / "state")],
        stdout=log, stderr=subprocess.STDOUT,
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
def repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    return make_repository(tmp_path_factory.mktemp("git"))


@pytest.fixture
async def gitlab(repository: tuple[Path, list[str]]) -> AsyncIterator[FakeGitLab]:
    fake = FakeGitLab(repository[0])
    await fake.start()
    yield fake
    await fake.close()
