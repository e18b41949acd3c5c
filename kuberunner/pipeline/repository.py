"""What GitLab would know about the pipeline's commit, read from the local git repository: the branch,
the commit, the default branch and the changed files (for `rules:changes`). No repository: a branch
named after nothing, and `changes:` true, as GitLab does when it has nothing to compare with."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT = 10.0
MAX_GIT_OUTPUT = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Repository:
    variables: tuple[tuple[str, str], ...]
    changed: frozenset[str] | None


def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 or len(done.stdout) > MAX_GIT_OUTPUT:
        return None
    return done.stdout.decode("utf-8", "replace").strip()


def read_repository(directory: Path) -> Repository:
    """Predefined variables of a push pipeline on the checked-out branch."""
    found: dict[str, str] = {"CI_PIPELINE_SOURCE": "push", "CI_PROJECT_NAME": directory.name}
    branch = _git(directory, "rev-parse", "--abbrev-ref", "HEAD")
    if branch is None:
        return Repository(tuple(found.items()), None)
    sha = _git(directory, "rev-parse", "HEAD") or ""
    if branch != "HEAD":
        found["CI_COMMIT_BRANCH"] = branch
    found["CI_COMMIT_REF_NAME"] = branch if branch != "HEAD" else sha
    found["CI_COMMIT_SHA"] = sha
    found["CI_COMMIT_SHORT_SHA"] = sha[:8]
    default = _git(directory, "symbolic-ref", "--short", "refs/remotes/origin/HEAD")
    found["CI_DEFAULT_BRANCH"] = (
        default.split("/", 1)[-1] if default else (branch if branch != "HEAD" else "main")
    )
    tag = _git(directory, "describe", "--tags", "--exact-match", "HEAD")
    if tag and branch == "HEAD":
        # A detached checkout of a tag is what a tag pipeline sees.
        found["CI_COMMIT_TAG"] = tag
        found["CI_COMMIT_REF_NAME"] = tag
    return Repository(tuple(found.items()), _changed(directory))


def _changed(directory: Path) -> frozenset[str] | None:
    last = _git(directory, "diff", "--name-only", "HEAD~1", "HEAD")
    pending = _git(directory, "status", "--porcelain", "--untracked-files=all")
    if last is None and pending is None:
        return None
    names = set((last or "").splitlines())
    for line in (pending or "").splitlines():
        names.add(line[3:].split(" -> ")[-1])
    return frozenset(n for n in names if n)
