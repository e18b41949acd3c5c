"""The planned pipeline: which jobs run, in which stage, after what, and on which condition."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kuberunner.job.spec import JobSpec

DEFAULT_STAGES = (".pre", "build", "test", "deploy", ".post")
"""GitLab's stages when a file names none; `.pre` and `.post` are always first and last."""

When = Literal["on_success", "on_failure", "always", "manual", "delayed"]
WHEN_VALUES = ("on_success", "on_failure", "always", "manual", "delayed", "never")


@dataclass(frozen=True, slots=True)
class Need:
    """One `needs:` entry, already pointing at a job of the plan (a parallel job's nodes each)."""

    name: str
    optional: bool = False
    artifacts: bool = True


@dataclass(frozen=True, slots=True)
class PlannedJob:
    name: str
    """As GitLab shows it: `test 1/3`, `build: [linux, amd64]`, or the YAML name."""
    base: str
    """The job's name in the YAML (the same for every node of a parallel job)."""
    stage: str
    stage_index: int
    spec: JobSpec
    when: When = "on_success"
    needs: tuple[Need, ...] | None = None
    """None: the job waits for every earlier stage; a tuple (maybe empty): only for these jobs."""
    dependencies: tuple[str, ...] | None = None
    """`dependencies:` as plan job names (a parallel job's nodes each); None: the keyword is absent."""
    allow_failure: bool = False
    exit_codes: frozenset[int] = frozenset()
    """With `allow_failure: exit_codes:`: only these exit codes are allowed to fail."""
    start_in: int = 0
    """`when: delayed`: seconds to wait once the job could start."""

    def failure_allowed(self, exit_code: int | None) -> bool:
        """Whether a failure with this exit code (None: not a script exit) leaves the pipeline green."""
        if self.exit_codes:
            return exit_code is not None and exit_code in self.exit_codes
        return self.allow_failure


@dataclass(frozen=True, slots=True)
class Plan:
    stages: tuple[str, ...]
    jobs: tuple[PlannedJob, ...]
    """In stage order, then file order: what `--list` shows and the order jobs start in."""
    excluded: tuple[str, ...] = ()
    """Jobs whose rules (or only/except) keep them out of the pipeline."""
    warnings: tuple[str, ...] = ()
    workflow_excluded: bool = False
    """`workflow:rules` decided no pipeline is created at all."""
    variables: tuple[tuple[str, str], ...] = field(default=())
    """Variables `workflow:rules` set for every job."""

    def artifact_sources(self, job: PlannedJob) -> tuple[str, ...]:
        """Whose artifacts `job` gets, as GitLab picks them: the `needs` that want artifacts (or, without
        `needs`, every job of an earlier stage), narrowed to `dependencies:` when it names any;
        `dependencies: []` takes none, whatever `needs` says."""
        if job.dependencies == ():
            return ()
        if job.needs is not None:
            found = [need.name for need in job.needs if need.artifacts]
        else:
            found = [other.name for other in self.jobs if other.stage_index < job.stage_index]
        if job.dependencies is not None:
            wanted = set(job.dependencies)
            found = [name for name in found if name in wanted]
        return tuple(found)
