"""Runs one job with the attach strategy: a pod whose PID-1 shell gets one command line per stage.

The job's flow, from pod creation to deletion, lives here; what the bytes are lives in `shell`,
how they travel in `kube`, how the ending is judged in `results.decide`. Per-job state is small
(`JobState`): the pod, the stage being run with its nonce, and the log offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

from kuberunner.executor import podhealth
from kuberunner.executor.backoff import Backoff
from kuberunner.executor.file_transport import FileLogReader, TransportError
from kuberunner.executor.podspec import PodDesign, build_pod, build_secret
from kuberunner.executor.results import JobResult, Observation, decide
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.job.spec import JobSpec
from kuberunner.kube import streams
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import ApiUnreachable, KubeError, NotFound
from kuberunner.shell import commands, render
from kuberunner.shell.markers import JobOutput, MarkerScanner, StageExited
from kuberunner.trace import Trace

log = logging.getLogger(__name__)

USER_STAGES = ("get_sources", "step_script")


@dataclass(frozen=True, slots=True)
class JobRequest:
    job: JobSpec
    job_id: str
    variables: tuple[tuple[str, str], ...]
    """Everything the scripts export, CI_* first; a later key wins."""
    project_dir: str
    project_archive: bytes | None
    timeout: float


@dataclass(slots=True)
class JobState:
    """What a restarted runner needs to pick the job up again."""

    namespace: str
    pod: str
    stage: str | None = None
    nonce: str | None = None
    offset: int = 0


class _StageOutcome:
    TIMED_OUT = "timed out"
    CANCELED = "canceled"


@dataclass(slots=True)
class _Run:
    request: JobRequest
    client: KubeClient
    settings: ExecutorSettings
    trace: Trace
    cancel: asyncio.Event
    state: JobState
    scanner: MarkerScanner = field(default_factory=MarkerScanner)
    exits: dict[str, asyncio.Future[int]] = field(default_factory=dict)
    broken: asyncio.Future[str] | None = None


async def run_job(
    *,
    request: JobRequest,
    client: KubeClient,
    settings: ExecutorSettings,
    trace: Trace,
    cancel: asyncio.Event,
) -> JobResult:
    loop = asyncio.get_running_loop()
    started = loop.time()
    pod_name = _pod_name(settings.runner_name, request.job.name)
    run = _Run(request, client, settings, trace, cancel, JobState(settings.namespace, pod_name))
    run.broken = loop.create_future()
    trace.runner_line(f"Using Kubernetes namespace: {settings.namespace}")
    trace.runner_line("Using attach strategy to execute scripts...")
    background: list[asyncio.Task[None]] = []
    codes: list[int | None] = []
    seen = Observation(exit_codes=())
    try:
        await _create_pod(run)
        ready = await _wait_for_running(run, deadline=started + request.timeout)
        if ready is not None:
            seen = ready
        else:
            trace.runner_line(f"Running on {pod_name} via {settings.runner_name}...")
            background.append(asyncio.create_task(_pump_output(run), name=f"{pod_name}: output"))
            background.append(asyncio.create_task(_watch_health(run), name=f"{pod_name}: health"))
            for stage in USER_STAGES:
                if stage == "step_script":
                    trace.runner_line('Executing "step_script" stage of the job script')
                outcome = await _run_stage(run, stage, deadline=started + request.timeout)
                if outcome == _StageOutcome.TIMED_OUT:
                    seen = Observation(tuple(codes), timed_out_after=request.timeout)
                    break
                if outcome == _StageOutcome.CANCELED:
                    seen = Observation(tuple(codes), canceled=True)
                    break
                if isinstance(outcome, str):
                    seen = Observation(tuple(codes), system_error=outcome)
                    break
                codes.append(outcome)
                seen = Observation(tuple(codes))
                if outcome != 0:
                    break
            if seen.system_error is None and request.job.after_script:
                await _run_after_script(run)
    except KubeError as exc:
        seen = Observation(tuple(codes), system_error=f"Kubernetes API: {exc}")
    except asyncio.CancelledError:
        seen = Observation(tuple(codes), canceled=True)
        raise
    finally:
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for event in run.scanner.flush():
            if isinstance(event, JobOutput):
                trace.job_output(event.data)
        await _delete_pod(run)
    return decide(seen)


def _pod_name(runner: str, job: str) -> str:
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in job.lower()).strip("-")[:30] or "job"
    return f"{runner}-{slug}-{secrets.token_hex(4)}".replace("--", "-")


async def _create_pod(run: _Run) -> None:
    request, settings = run.request, run.settings
    design = PodDesign(
        name=run.state.pod,
        namespace=settings.namespace,
        image=request.job.image or settings.image,
        runner_name=settings.runner_name,
        job_id=request.job_id,
        job_name=request.job.name,
        paths=settings.paths,
        active_deadline_seconds=int(request.timeout + settings.after_script_timeout + 60),
    )
    pod = await run.client.create_pod(settings.namespace, build_pod(design))
    files = _stage_files(run)
    await run.client.create_secret(settings.namespace, build_secret(pod=pod, files=files))


def _stage_files(run: _Run) -> dict[str, bytes]:
    request, paths = run.request, run.settings.paths
    archive_name = "project.tar.gz"
    files = {
        "get_sources": render.render_get_sources(
            archive=paths.script(archive_name) if request.project_archive is not None else None,
            project_dir=request.project_dir,
        ).encode(),
        "step_script": render.render_user_stage(
            commands=[*request.job.before_script, *request.job.script],
            variables=request.variables,
            project_dir=request.project_dir,
        ).encode(),
        "after_script": render.render_user_stage(
            commands=request.job.after_script, variables=request.variables, project_dir=request.project_dir
        ).encode(),
        "kill_stage": render.KILL_STAGE.encode(),
    }
    if request.project_archive is not None:
        files[archive_name] = request.project_archive
    return files


async def _wait_for_running(run: _Run, *, deadline: float) -> Observation | None:
    """None once the build container runs; otherwise how the job ended before it could start."""
    loop = asyncio.get_running_loop()
    limit = min(deadline, loop.time() + run.settings.pod_start_timeout)
    last_message = ""
    name = f"{run.state.namespace}/{run.state.pod}"

    async def watch() -> str | None:
        nonlocal last_message
        async for event_type, pod in run.client.watch_pod(run.state.namespace, run.state.pod):
            state = podhealth.assess(event_type, pod)
            if isinstance(state, podhealth.Ready):
                return None
            if isinstance(state, podhealth.Broken):
                return state.reason
            if state.message != last_message:
                last_message = state.message
                run.trace.runner_line(f"Waiting for pod {name} to be running, status is {state.message}")
        return f"the watch of pod {name} ended before it ran"

    watcher = asyncio.ensure_future(watch())
    canceled = asyncio.ensure_future(run.cancel.wait())
    try:
        done, _ = await asyncio.wait(
            {watcher, canceled}, timeout=max(0.0, limit - loop.time()), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (watcher, canceled):
            task.cancel()
    if canceled in done:
        return Observation((), canceled=True)
    if watcher not in done:
        if limit >= deadline:
            return Observation((), timed_out_after=run.request.timeout)
        return Observation((), system_error=f"timed out waiting for pod {name} to start ({last_message})")
    reason = watcher.result()
    return None if reason is None else Observation((), system_error=reason)


async def _pump_output(run: _Run) -> None:
    reader = FileLogReader(
        client=run.client,
        namespace=run.state.namespace,
        pod=run.state.pod,
        container=podhealth.BUILD_CONTAINER,
        path=run.settings.paths.log_file,
        offset=run.state.offset,
        backoff=Backoff(budget=run.settings.api_budget),
    )
    try:
        async for chunk in reader.chunks():
            run.state.offset = reader.offset
            for event in run.scanner.feed(chunk):
                if isinstance(event, JobOutput):
                    run.trace.job_output(event.data)
                elif isinstance(event, StageExited):
                    future = run.exits.get(event.stage)
                    if future is not None and not future.done():
                        future.set_result(event.exit_code)
    except TransportError as exc:
        _mark_broken(run, str(exc))


async def _watch_health(run: _Run) -> None:
    reason = await podhealth.wait_until_broken(
        client=run.client,
        namespace=run.state.namespace,
        name=run.state.pod,
        backoff=Backoff(budget=run.settings.api_budget),
    )
    _mark_broken(run, reason)


def _mark_broken(run: _Run, reason: str) -> None:
    if run.broken is not None and not run.broken.done():
        run.broken.set_result(reason)


async def _run_stage(run: _Run, stage: str, *, deadline: float) -> int | str:
    """The stage's exit code, or a _StageOutcome / system-failure reason string."""
    loop = asyncio.get_running_loop()
    nonce, token = secrets.token_hex(16), secrets.token_hex(8)
    exited: asyncio.Future[int] = loop.create_future()
    run.exits[stage] = exited
    run.state.stage, run.state.nonce = stage, nonce
    run.scanner.expect(stage=stage, nonce=nonce)
    paths = run.settings.paths
    await _write_stdin(run, commands.start_stage(paths=paths, stage=stage, nonce=nonce, token=token))
    assert run.broken is not None
    canceled = asyncio.ensure_future(run.cancel.wait())
    try:
        done = await _first([exited, run.broken, canceled], within=max(0.0, deadline - loop.time()))
    finally:
        canceled.cancel()
    if exited in done:
        return exited.result()
    if run.broken in done:
        return run.broken.result()
    outcome = _StageOutcome.CANCELED if canceled in done else _StageOutcome.TIMED_OUT
    run.trace.runner_line(
        "Job canceled: stopping the running stage"
        if canceled in done
        else "Job timed out: stopping the running stage",
        level="error",
    )
    await _write_stdin(run, commands.kill_stage(paths=paths, token=token))
    await _first([exited, run.broken], within=run.settings.kill_grace)
    return outcome


async def _run_after_script(run: _Run) -> None:
    run.trace.runner_line("Running after_script")
    loop = asyncio.get_running_loop()
    outcome = await _run_stage(run, "after_script", deadline=loop.time() + run.settings.after_script_timeout)
    if outcome == _StageOutcome.TIMED_OUT:
        run.trace.runner_line("WARNING: after_script timed out", level="warning")
    elif isinstance(outcome, int) and outcome != 0:
        run.trace.runner_line(f"WARNING: after_script failed with exit code {outcome}", level="warning")
    elif isinstance(outcome, str) and outcome != _StageOutcome.CANCELED:
        run.trace.runner_line(f"WARNING: after_script did not finish: {outcome}", level="warning")


async def _first(awaitables: Sequence[Awaitable[object]], *, within: float) -> set[asyncio.Future[object]]:
    futures: set[asyncio.Future[object]] = {asyncio.ensure_future(a) for a in awaitables}
    done, _ = await asyncio.wait(futures, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    return done


async def _write_stdin(run: _Run, data: bytes) -> None:
    """Write one command line to PID 1. Only a refused connection is retried: nothing reached the pod."""
    loop = asyncio.get_running_loop()
    backoff = Backoff(budget=run.settings.api_budget)
    while True:
        try:
            await streams.attach_write(
                run.client,
                namespace=run.state.namespace,
                pod=run.state.pod,
                container=podhealth.BUILD_CONTAINER,
                data=data,
            )
            return
        except ApiUnreachable:
            delay = backoff.failed(loop.time())
            if delay is None:
                raise
            await asyncio.sleep(delay)


async def _delete_pod(run: _Run) -> None:
    with contextlib.suppress(NotFound):
        try:
            await run.client.delete_pod(run.state.namespace, run.state.pod, grace_seconds=0)
        except KubeError as exc:
            run.trace.runner_line(f"WARNING: could not delete pod {run.state.pod}: {exc}", level="warning")
