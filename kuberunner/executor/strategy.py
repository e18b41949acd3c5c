"""The seam between a job's flow and how its stages are started and heard from.

`attach` (the default) writes one line per stage into PID 1's stdin and reads the log file;
`legacy_exec` (FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY) runs each stage as a pods/exec whose
connection carries the output. The flow in `job` picks one strategy object once and never asks the
feature flag again. Which container a stage runs in comes from the job's `StagePlan`, also decided
once; a strategy starts, reads and kills every stage the same way in whichever container it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kuberunner.executor.results import Observation
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.executor.stages import StagePlan
from kuberunner.kube.client import KubeClient
from kuberunner.trace import Trace


@dataclass(frozen=True, slots=True)
class Exited:
    """The stage ran to its end and reported this exit code."""

    exit_code: int


@dataclass(frozen=True, slots=True)
class Lost:
    """The stage's outcome cannot be known: a system failure naming why."""

    reason: str


@dataclass(frozen=True, slots=True)
class Stopped:
    """The runner stopped the stage (timeout or cancel) and killed its process tree."""

    canceled: bool


StageEnd = Exited | Lost | Stopped


@dataclass(slots=True)
class JobState:
    """What a restarted runner needs to pick the job up again: small and serialisable."""

    namespace: str
    pod: str
    stage: str | None = None
    nonce: str | None = None
    offset: int = 0
    token: str | None = None
    """The running stage's kill token; with `nonce`, what lets a restarted runner take the stage over."""
    records: dict[str, tuple[str, int]] = field(default_factory=dict)
    """`kubelet` transport: per container, the last record read (timestamp, how many at it)."""
    held: int = 0
    """Bytes before `offset` read but not yet passed to the trace (a possible marker's start, or
    what followed a marker until the next stage is expected)."""
    clean: bool = False
    """The stage being read still awaits its marker: reading again from `offset - held` (less what
    the trace holds back for masking) yields exactly the output that followed."""
    outcome: Observation | None = None
    """How the user stages ended, once they have (what decides whether after_script runs)."""


@dataclass(slots=True)
class JobContext:
    """What every strategy may use while a job runs."""

    client: KubeClient
    settings: ExecutorSettings
    trace: Trace
    state: JobState
    cancel: asyncio.Event
    plan: StagePlan
    """The pod's containers and where each stage runs."""
    progress: Callable[[str, JobState], None] | None = None
    """Told of every step a restarted runner needs: "pod", "stage", "output", "stage_ended",
    "stages_done", "finished" (`resume`, `runner.journal`)."""
    broken: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    """Set once with the reason when the pod can no longer run the job."""

    def report(self, event: str) -> None:
        if self.progress is not None:
            self.progress(event, self.state)

    def mark_broken(self, reason: str) -> None:
        if not self.broken.done():
            self.broken.set_result(reason)


class Strategy(Protocol):
    name: str
    """As the trace says it: "Using {name} to execute scripts..."."""

    async def open(self, job: JobContext) -> None:
        """Every container runs: start whatever outlives single stages (log readers)."""
        ...

    async def run_stage(self, job: JobContext, stage: str, *, deadline: float) -> StageEnd:
        """Run one stage to its end, or stop it at `deadline` or on `job.cancel`."""
        ...

    async def close(self) -> None:
        """Stop background work; the pod is about to be deleted."""
        ...
