"""Run a Plan as GitLab would: every job an asyncio task that waits for its needs (or for every earlier
stage), decides from their results whether it runs (`when:`), then runs under a concurrency limit.

The scheduler knows nothing of pods or traces: `run_job` runs one job and says how it ended, and
`events` hears each start and end (kuberunner.local wires both). A failure does not stop the run:
later on_success jobs are skipped, on_failure and always jobs run, as in GitLab.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from kuberunner.pipeline.plan.model import Plan, PlannedJob

CANCELED_STATUS = 130


class Status(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    ALLOWED = "allowed to fail"
    SKIPPED = "skipped"
    MANUAL = "manual"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class JobEnd:
    """How one job that ran ended: the `exec` exit status (0, 1, 3, 4, 130) and the script's exit code."""

    exit_status: int
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    job: PlannedJob
    status: Status
    exit_status: int = 0
    started: float | None = None
    duration: float | None = None


class Events(Protocol):
    def started(self, job: PlannedJob) -> None: ...

    def ended(self, outcome: Outcome) -> None: ...


RunJob = Callable[[PlannedJob], Awaitable[JobEnd]]


@dataclass(frozen=True, slots=True)
class RunResult:
    outcomes: tuple[Outcome, ...]
    """In plan order."""
    exit_status: int
    """0 when the pipeline passed; else the first failed job's status, or 130 when canceled."""


async def run_plan(
    plan: Plan,
    *,
    run_job: RunJob,
    events: Events,
    concurrency: int,
    cancel: asyncio.Event,
    clock: Callable[[], float] = time.monotonic,
) -> RunResult:
    done = {job.name: asyncio.Event() for job in plan.jobs}
    outcomes: dict[str, Outcome] = {}
    failure_order: list[str] = []
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(job: PlannedJob) -> None:
        try:
            outcome = await _job(job)
        except asyncio.CancelledError:
            outcome = Outcome(job, Status.CANCELED, CANCELED_STATUS)
        outcomes[job.name] = outcome
        if outcome.status is Status.FAILED:
            failure_order.append(job.name)
        if outcome.started is None:
            events.ended(outcome)
        done[job.name].set()

    async def _job(job: PlannedJob) -> Outcome:
        before = _prerequisites(plan, job)
        for name in before:
            await done[name].wait()
        if cancel.is_set():
            return Outcome(job, Status.CANCELED, CANCELED_STATUS)
        if not _should_run(job, [outcomes[n] for n in before], stage_based=job.needs is None):
            return Outcome(job, Status.MANUAL if job.when == "manual" else Status.SKIPPED)
        if job.start_in > 0 and job.when == "delayed":
            try:
                await asyncio.wait_for(cancel.wait(), timeout=job.start_in)
                return Outcome(job, Status.CANCELED, CANCELED_STATUS)
            except TimeoutError:
                pass
        async with slots:
            if cancel.is_set():
                return Outcome(job, Status.CANCELED, CANCELED_STATUS)
            started = clock()
            events.started(job)
            end = await run_job(job)
        outcome = Outcome(job, _status(job, end), end.exit_status, started, clock() - started)
        events.ended(outcome)
        return outcome

    tasks = [asyncio.create_task(one(job), name=f"job {job.name}") for job in plan.jobs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    ordered = tuple(outcomes[job.name] for job in plan.jobs)
    return RunResult(ordered, _pipeline_status(ordered, failure_order, outcomes, cancel))


def _prerequisites(plan: Plan, job: PlannedJob) -> list[str]:
    names = {j.name for j in plan.jobs}
    if job.needs is not None:
        return [n.name for n in job.needs if n.name in names]
    return [j.name for j in plan.jobs if j.stage_index < job.stage_index]


def _should_run(job: PlannedJob, before: list[Outcome], *, stage_based: bool) -> bool:
    failed = any(o.status in (Status.FAILED, Status.CANCELED) for o in before)
    if stage_based:
        # A manual job nobody started holds later stages only when it may not fail (GitLab "blocked").
        blocked = any(o.status is Status.MANUAL and not o.job.allow_failure for o in before)
    else:
        blocked = any(o.status in (Status.SKIPPED, Status.MANUAL) for o in before)
    if job.when == "always":
        return True
    if job.when == "on_failure":
        return failed
    if job.when == "manual":
        return False
    return not failed and not blocked


def _status(job: PlannedJob, end: JobEnd) -> Status:
    if end.exit_status == 0:
        return Status.PASSED
    if end.exit_status == CANCELED_STATUS:
        return Status.CANCELED
    return Status.ALLOWED if job.failure_allowed(end.exit_code) else Status.FAILED


def _pipeline_status(
    ordered: tuple[Outcome, ...],
    failure_order: list[str],
    outcomes: dict[str, Outcome],
    cancel: asyncio.Event,
) -> int:
    if cancel.is_set() or any(o.status is Status.CANCELED for o in ordered):
        return CANCELED_STATUS
    if failure_order:
        return outcomes[failure_order[0]].exit_status
    return 0
