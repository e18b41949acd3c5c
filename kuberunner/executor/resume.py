"""Taking over a job another runner process started: its pod, its stage, its place in the log.

A restarted `kuberunner run` knows from its record which pod runs the job, which stages were started
with which nonce and kill token, and from which byte of the log file its trace goes on. Nothing is
started twice: the start line of a stage is idempotent, so the stage being taken over is simply
written again. A marker that arrived while no runner was reading is found in the log like any other;
a stage still running is waited for, and later stages and after_script follow as in `job.run_job`.
The cache and artifact stages are stages like the others: the record names which the job has (their
URLs and tokens stay in the pod's Secret), so a transfer running while no runner watched is waited
for, never started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from kuberunner.executor import job as flow
from kuberunner.executor.attach import AttachStrategy
from kuberunner.executor.file_transport import TransportError
from kuberunner.executor.results import JobResult, Observation, Success, SystemFailure, decide
from kuberunner.executor.services import container_name
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.executor.stages import USER_STAGES, WAIT_FOR_SERVICES, StagePlan
from kuberunner.executor.strategy import Exited, JobContext, JobState, Lost, Stopped
from kuberunner.executor.transfer_stages import (
    AFTER_SCRIPT_STAGES,
    after_script_stage,
    run_after_stages,
    script_files,
    stages_after_due,
    stages_before_script,
)
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeError, NotFound
from kuberunner.shell.transfers import Transfers
from kuberunner.trace import Trace

log = logging.getLogger(__name__)

AFTER_SCRIPT = "after_script"
STAGES = (*USER_STAGES, AFTER_SCRIPT)
USER_STAGES_DONE = "user_stages"
"""The checkpoint stage once get_sources and step_script ended (after_script may follow)."""


@dataclass(slots=True)
class ResumeFrom:
    """The executor's part of a job record: where the job stands and how it must go on."""

    namespace: str
    pod: str
    git_sources: bool
    stage: str
    """A stage of STAGES, or USER_STAGES_DONE once get_sources and step_script have ended."""
    ended: bool
    """False: the trace goes on with the stage's output (its section is open); True: the stage's
    section is closed and the trace goes on with what follows it."""
    offset: int
    """The log file byte the trace goes on from (`file` transport)."""
    records: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Per container, the last log record the trace holds (`kubelet` transport)."""
    started: dict[str, tuple[str, str]] = field(default_factory=dict)
    """(nonce, kill token) of every stage written to the pod so far."""
    started_at: dict[str, float] = field(default_factory=dict)
    """Unix time each of those stages was started at (absent in older records)."""
    deadline: float = 0.0
    """Unix time at which the job's timeout ends, counted from its real start."""
    timeout: float = 3600.0
    outcome: Observation | None = None
    """How the user stages went so far (the exit codes of those that ended)."""
    after_script: bool = False
    after_script_when: Literal["always", "on_success", "on_failure"] = "always"
    after_script_timeout: float | None = None
    before_script: tuple[str, ...] = ()
    """The stages the job ran between get_sources and step_script (wait_for_services, restore_cache,
    download_artifacts), in order: `stages_between`."""
    after_stages: frozenset[str] = frozenset()
    """The cache and artifact stages after the script the pod has scripts for (`script_files`)."""

    @property
    def user_stages(self) -> tuple[str, ...]:
        """Every stage up to the script, in the order the job runs them."""
        return (USER_STAGES[0], *self.before_script, *USER_STAGES[1:])


def stages_between(*, waits_for_services: bool, transfers: Transfers | None) -> tuple[str, ...]:
    """The stages a job runs between get_sources and step_script, for its record."""
    waits = (WAIT_FOR_SERVICES,) if waits_for_services else ()
    return (*waits, *stages_before_script(transfers))


def after_stages(transfers: Transfers | None, *, project_dir: str) -> frozenset[str]:
    """The stages after the script the job's pod has scripts for, for its record."""
    return frozenset(set(script_files(transfers, project_dir=project_dir)) & set(AFTER_SCRIPT_STAGES))


def resumable_stage(stage: str, resume: ResumeFrom) -> bool:
    """Whether a checkpoint at `stage` is one a restarted runner can go on from."""
    return (
        stage in resume.user_stages
        or stage == USER_STAGES_DONE
        or is_after_script(stage)
        or stage in resume.after_stages
    )


def pod_gone_reason(pod: str) -> str:
    return f"the job's pod {pod} was deleted while no runner watched it"


async def resume_job(
    *,
    resume: ResumeFrom,
    client: KubeClient,
    settings: ExecutorSettings,
    trace: Trace,
    cancel: asyncio.Event,
    progress: Callable[[str, JobState], None] | None = None,
) -> JobResult:
    """Carry the job on from `resume` to its end, delete its pod, and say how it ended."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (resume.deadline - time.time())
    strategy = AttachStrategy()
    job = JobContext(
        client=client,
        settings=settings,
        trace=trace,
        state=JobState(resume.namespace, resume.pod, offset=resume.offset, records=dict(resume.records)),
        cancel=cancel,
        plan=StagePlan(git_sources=resume.git_sources),
        progress=progress,
    )
    trace.on_failure(job.mark_broken)
    health: asyncio.Task[None] | None = None
    seen = resume.outcome or Observation(())
    try:
        if _only_clean_up_left(resume):
            return decide(seen)
        problem = await pod_problem(client, resume.namespace, resume.pod)
        if problem is not None:
            return SystemFailure(problem)
        health = asyncio.create_task(flow._watch_health(job), name=f"{job.state.pod}: health")
        await strategy.open(job)
        if resume.stage in resume.user_stages:
            seen = await _user_stages(job, strategy, resume, deadline=deadline)
            job.state.outcome = seen
            job.report("stages_done")
        if is_after_script(resume.stage):
            if not resume.ended:
                await _after_script(job, strategy, resume, stage=resume.stage, first=True)
        elif resume.stage not in resume.after_stages and _after_script_due(resume, seen):
            await _after_script(job, strategy, resume, stage=after_script_stage(seen), first=False)
        taken_over = (resume.stage, resume.ended) if resume.stage in resume.after_stages else None
        seen = await run_after_stages(
            job,
            strategy,
            seen,
            present=resume.after_stages,
            taken_over=taken_over,
            take_over=lambda stage: _take_over(job, resume, stage),
        )
        job.state.outcome = seen
        job.report("finished")
    except KubeError as exc:
        seen = Observation(seen.exit_codes, system_error=f"Kubernetes API: {exc}")
    except TransportError as exc:
        seen = Observation(seen.exit_codes, system_error=str(exc))
    finally:
        await flow._despite_cancel(flow._clean_up(job, strategy, health))
    if trace.failure is not None and seen.system_error is None:
        seen = Observation(seen.exit_codes, system_error=trace.failure)
    return decide(seen)


async def delete_pod(client: KubeClient, namespace: str, pod: str) -> None:
    """Remove a job's pod (its Secret goes with it, being owned by it); a pod already gone is fine."""
    with contextlib.suppress(NotFound):
        await client.delete_pod(namespace, pod, grace_seconds=0)


async def pod_problem(client: KubeClient, namespace: str, name: str) -> str | None:
    """Why the pod cannot carry the job on, or None when it still runs."""
    try:
        pod = await client.get_pod(namespace, name)
    except NotFound:
        return pod_gone_reason(name)
    status = pod.get("status") if isinstance(pod, dict) else None
    phase = status.get("phase") if isinstance(status, dict) else None
    if phase in ("Succeeded", "Failed"):
        reason = status.get("reason") if isinstance(status, dict) else None
        return f"the job's pod {name} stopped while no runner watched it ({reason or phase})"
    return None


def needs_pod(resume: ResumeFrom) -> bool:
    """False when every stage that was due ran: the outcome is known, the pod is needed no more."""
    return not _only_clean_up_left(resume)


def is_after_script(stage: str) -> bool:
    """after_script runs as `after_script` or a variant naming the job's status (`transfer_stages`)."""
    return stage == AFTER_SCRIPT or stage.startswith(AFTER_SCRIPT + "_")


def _only_clean_up_left(resume: ResumeFrom) -> bool:
    """Every stage that was due ran: the outcome is known, the pod is needed no more."""
    seen = resume.outcome or Observation(())
    due = stages_after_due(seen, resume.after_stages)
    if resume.stage in resume.after_stages:
        return resume.ended and (resume.stage not in due or due[-1] == resume.stage)
    if is_after_script(resume.stage):
        return resume.ended and not due
    return resume.stage == USER_STAGES_DONE and not _after_script_due(resume, seen) and not due


def _take_over(job: JobContext, resume: ResumeFrom, stage: str) -> None:
    """Let the strategy reuse the nonce and token the stage was started with, if it was."""
    nonce, token = resume.started.get(stage, (None, None))
    job.state.stage, job.state.nonce, job.state.token = stage, nonce, token


async def _user_stages(
    job: JobContext, strategy: AttachStrategy, resume: ResumeFrom, *, deadline: float
) -> Observation:
    stages = resume.user_stages
    first = stages.index(resume.stage)
    # Every stage but wait_for_services gives the job an exit code, as in `job._run_user_stages`.
    coded = sum(1 for stage in stages[:first] if stage != WAIT_FOR_SERVICES)
    codes: list[int | None] = [0] * coded
    if resume.ended:
        codes = list(resume.outcome.exit_codes if resume.outcome else (0,) * (coded + 1))
        if codes and codes[-1] != 0:
            return Observation(tuple(codes))
        first += 1
    for stage in stages[first:]:
        opened = resume.ended or stage != resume.stage
        if opened:
            job.trace.section_start(stage, job.plan.header(stage))
        _take_over(job, resume, stage)
        try:
            end = await strategy.run_stage(job, stage, deadline=deadline)
        finally:
            job.trace.section_end(stage)
        if stage == WAIT_FOR_SERVICES:
            if isinstance(end, Exited) and end.exit_code > 0:
                # The service's image and log tail are not in the record: its container's name is.
                job.trace.runner_line(
                    f"*** WARNING: Service {container_name(end.exit_code - 1)} probably didn't start "
                    "properly.",
                    level="warning",
                )
            continue
        ended = await flow.user_stage_ended(job, end, codes, job_timeout=resume.timeout)
        if ended is not None:
            return ended
    return Observation(tuple(codes))


def _after_script_due(resume: ResumeFrom, seen: Observation) -> bool:
    if seen.system_error is not None or not resume.after_script:
        return False
    succeeded = isinstance(decide(seen), Success)
    return {"always": True, "on_success": succeeded, "on_failure": not succeeded}[resume.after_script_when]


async def _after_script(
    job: JobContext, strategy: AttachStrategy, resume: ResumeFrom, *, stage: str, first: bool
) -> None:
    """As `job._run_after_script`; `first`: the section is the one being taken over (already opened)."""
    loop = asyncio.get_running_loop()
    cleanup = JobContext(
        client=job.client,
        settings=job.settings,
        trace=job.trace,
        state=job.state,
        cancel=asyncio.Event(),
        plan=job.plan,
        progress=job.progress,
        broken=job.broken,
    )
    if not first:
        job.trace.section_start(AFTER_SCRIPT, job.plan.header(AFTER_SCRIPT))
    _take_over(job, resume, stage)
    allowed = resume.after_script_timeout or job.settings.after_script_timeout
    if first and stage in resume.started_at:
        # Taken over while it ran: what is left of its timeout, not a new one.
        allowed = max(0.0, resume.started_at[stage] + allowed - time.time())
    try:
        end = await strategy.run_stage(cleanup, stage, deadline=loop.time() + allowed)
    finally:
        job.trace.section_end(AFTER_SCRIPT)
    match end:
        case Exited(exit_code=0) | Stopped(canceled=True):
            pass
        case Exited(exit_code=code):
            job.trace.runner_line(f"WARNING: after_script failed with exit code {code}", level="warning")
        case Lost(reason=reason):
            job.trace.runner_line(f"WARNING: after_script did not finish: {reason}", level="warning")
        case Stopped(canceled=False):
            job.trace.runner_line("WARNING: after_script timed out", level="warning")
    job.report("stage_ended")
