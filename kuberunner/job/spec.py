"""What one CI job is, independent of where it came from (.gitlab-ci.yml now, a GitLab job payload later)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kuberunner.job.transfer_keywords import Transfers


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One visible job, with `default:`, `extends:` and global variables already resolved."""

    name: str
    script: tuple[str, ...]
    before_script: tuple[str, ...] = ()
    after_script: tuple[str, ...] = ()
    image: str | None = None
    image_pull_policy: tuple[str, ...] = ()
    """`image:pull_policy` as Kubernetes names (`IfNotPresent`…); (): the runner's `pull_policy`."""
    variables: tuple[tuple[str, str], ...] = ()
    """Global variables first, then the job's own (a later key overrides an earlier one when applied)."""
    timeout_seconds: int | None = None
    """The job's `timeout:`; None means the runner's default."""
    warnings: tuple[str, ...] = ()
    """One line per keyword we do not support yet, e.g.
    "job 'build': keyword 'services' is not supported yet and is ignored"."""
    transfers: Transfers | None = None
    """`artifacts`, `cache` and `services` (`transfer_keywords`); None: the job has none of them."""


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A parsed .gitlab-ci.yml."""

    path: Path
    jobs: tuple[JobSpec, ...] = field(default=())
    """Visible jobs (not starting with '.'), in file order."""
    warnings: tuple[str, ...] = ()
    """Top-level keywords we do not support yet."""

    def job(self, name: str) -> JobSpec | None:
        return next((j for j in self.jobs if j.name == name), None)
