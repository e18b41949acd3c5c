"""The runner's tests: a session cluster (as in tests/cli: embedded, or the real tier's), a git repository,
a fake GitLab."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cli.execution import Cluster, start_cluster
from real.cluster import REAL_KUBECONFIG, TEST_HOST_ADDRESS, real_cluster

from .fake_gitlab import FakeGitLab
from .git_http import make_repository


@pytest.fixture(scope="session")
def gitlab_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if REAL_KUBECONFIG:
        yield real_cluster(Path(REAL_KUBECONFIG), tmp_path_factory.mktemp("gitlab-cluster"))
        return
    yield from start_cluster(tmp_path_factory.mktemp("gitlab-cluster"))


@pytest.fixture(autouse=True)
def _git_in_the_build_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """These jobs run git in `build` too, as GitLab jobs do: on the real tier their build image is the
    helper image (busybox and git), the same image the helper runs."""
    helper = os.environ.get("KUBERUNNER_TEST_HELPER_IMAGE")
    if REAL_KUBECONFIG and helper:
        monkeypatch.setenv("KUBERNETES_IMAGE", helper)


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    return make_repository(tmp_path_factory.mktemp("git"))


@pytest.fixture
async def gitlab(repository: tuple[Path, list[str]]) -> AsyncIterator[FakeGitLab]:
    fake = FakeGitLab(repository[0])
    await fake.start(host=TEST_HOST_ADDRESS)
    yield fake
    await fake.close()
