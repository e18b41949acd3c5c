"""The runner's tests: a session cluster (a subprocess, as in tests/cli), a git repository, a fake GitLab."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cli.execution import Cluster, start_cluster

from .fake_gitlab import FakeGitLab
from .git_http import make_repository


@pytest.fixture(scope="session")
def gitlab_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory.mktemp("gitlab-cluster"))


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    return make_repository(tmp_path_factory.mktemp("git"))


@pytest.fixture
async def gitlab(repository: tuple[Path, list[str]]) -> AsyncIterator[FakeGitLab]:
    fake = FakeGitLab(repository[0])
    await fake.start()
    yield fake
    await fake.close()
