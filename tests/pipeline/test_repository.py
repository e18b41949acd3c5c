"""What a local run knows about its commit, from the git repository around the pipeline file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kuberunner.pipeline.repository import read_repository


def git(directory: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(directory), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


def test_a_branch_checkout_is_a_push_pipeline_with_its_changed_files(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "feature")
    (tmp_path / "a.txt").write_text("a")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "commit", "-q", "-m", "one")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "b.py").write_text("b")
    git(tmp_path, "add", "src/b.py")
    git(tmp_path, "commit", "-q", "-m", "two")
    (tmp_path / "new.md").write_text("n")
    found = read_repository(tmp_path)
    variables = dict(found.variables)
    assert variables["CI_COMMIT_BRANCH"] == variables["CI_COMMIT_REF_NAME"] == "feature"
    assert variables["CI_PIPELINE_SOURCE"] == "push"
    assert len(variables["CI_COMMIT_SHA"]) == 40
    assert variables["CI_DEFAULT_BRANCH"] == "feature"  # no origin: the branch checked out
    assert found.changed == frozenset({"src/b.py", "new.md"})


def test_no_repository_means_changes_are_unknown(tmp_path: Path) -> None:
    found = read_repository(tmp_path)
    assert found.changed is None
    assert "CI_COMMIT_BRANCH" not in dict(found.variables)
