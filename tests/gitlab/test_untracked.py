"""`artifacts:untracked` and cache `untracked` on `kuberunner run` (issue 13): every file git does not
track in the build directory is collected (.gitignore'd ones too, as GitLab says), tracked files only
when `paths` names them, and `exclude` applies to both."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from cli.execution import Cluster

from .cache_config import local_cache
from .fake_gitlab import FakeGitLab
from .runner_process import finished, script_job, started_runner

MAKE_FILES = (
    "echo changed >> version.txt",  # tracked (the fake GitLab's repository holds it): not untracked
    "mkdir -p gen/deep && echo new > new.txt && echo deep > gen/deep/file.bin",
    "echo ignored > skipped.log && printf '*.tmp\\n' > .gitignore && echo t > kept.tmp",
)


def untracked(name: str, *paths: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "untracked": True,
        "paths": list(paths),
        "when": "on_success",
        "artifact_type": "archive",
        "artifact_format": "zip",
        "expire_in": "1 week",
        **extra,
    }


def names(data: bytes) -> list[str]:
    return sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())


async def test_untracked_artifacts_and_cache_take_what_git_does_not_track(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    directory = tmp_path / "cache"
    config = local_cache(directory)
    alone = gitlab.enqueue(
        script_job(
            *MAKE_FILES,
            artifacts=[untracked("alone", exclude=["*.log"])],
            cache=[{"key": "u1", "paths": [], "untracked": True, "policy": "push", "when": "on_success"}],
        )
    )
    with_paths = gitlab.enqueue(script_job(*MAKE_FILES, artifacts=[untracked("both", "version.txt")]))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path, extra=config)
    try:
        await finished(alone, runner, within=120)
        await finished(with_paths, runner, within=120)
    finally:
        assert await runner.stop() == 0
    assert alone.state == "success", alone.text.decode(errors="replace")[-3000:]
    assert with_paths.state == "success", with_paths.text.decode(errors="replace")[-3000:]
    assert names(alone.artifact("archive").data) == [".gitignore", "gen/deep/file.bin", "kept.tmp", "new.txt"]
    assert names(with_paths.artifact("archive").data) == [
        ".gitignore",
        "gen/deep/file.bin",
        "kept.tmp",
        "new.txt",
        "skipped.log",
        "version.txt",
    ]
    cached = zipfile.ZipFile(directory / "project" / "7" / "u1" / "cache.zip")
    assert sorted(cached.namelist()) == [
        ".gitignore",
        "gen/deep/file.bin",
        "kept.tmp",
        "new.txt",
        "skipped.log",
    ]
