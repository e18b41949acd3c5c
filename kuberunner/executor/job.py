"""One job's flow, from pod creation to deletion, whatever strategy runs its stages.

What the bytes are lives in `shell`, how they travel in `kube` and the strategies, how the ending
is judged in `results.decide`. The strategy and the stage plan (the pod's containers, which one runs
each stage) are chosen once, here. Each stage is a trace section, as GitLab folds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from kuberunner import __version__
from kuberunner.executor import podhealth, retrying
from kuberunner.executor.attach import AttachStrategy
from kuberunner.executor.backoff import Backoff
from kuberunner.executor.file_transport import TransportError
from kuberunner.executor.legacy_exec import LegacyExecStrategy
from kuberunner.executor.podspec import PodDesign, build_pod, build_secret, dns_slug
from kuberunner.executor.results import JobResult, Observation, Success, decide
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.executor.stages import HELPER_CONTAINER, USER_STAGES, StagePlan
from kuberunner.executor.strategy import Exited, JobContext, JobState, Lost, Stopped, Strategy
from kuberunner.executor.waiting import first_of
from kuberunner.job.spec import JobSpec
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeError, NotFound
from kuberunner.shell import render
from kuberunner.trace import Trace

log = logging.getLogger(__name__)

LEGACY_FLAG = "FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY"


@dataclass(frozen=True, slots=True)
class GitSource:
    """Where get_sources fetches the project from, for jobs from a GitLab server."""

    repo_url: str
    """With the job token in it; the token is masked in the trace."""
    sha: str
    ref: str
    ref_type: str = "branch"
    depth: int = 0
    """GIT_DEPTH; 0: full history."""
    strategy: str = "clone"
    """GIT_STRATEGY: clone, fetch or none."""
    checkout: bool = True
    """GIT_CHECKOUT."""


@dataclass(frozen=True, slots=True)
class JobRequest:
    job: JobSpec
    job_id: str
    variables: tuple[tuple[str, str], ...]
    """Everything the scripts export, CI_* first; a later key wins."""
    project_dir: str
    project_archive: bytes | None
    timeout: float
    legacy_exec: bool = False
    """FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY, already resolved from env, config and variables."""
    git: GitSource | None = None
    """When set, get_sources fetches the project with git, in the pod's `helper` container, instead
    of unpacking `project_archive` in the build container."""
    variable_files: tuple[tuple[str, bytes], ...] = ()
    """`file: true` variables (KEY, content): delivered with the scripts; $KEY holds the path."""
    after_script_timeout: float | None = None
    """The after_script step's own timeout (GitLab's payload); None means the executor's default."""
    after_script_when: Literal["always", "on_success", "on_failure"] = "always"
    """When after_script runs; GitLab sends `always`, and a job can only narrow it."""


def after_script_due(request: JobRequest, seen: Observation) -> bool:
    """after_script runs after success, failure, timeout and cancel, unless its `when` says otherwise;
    never when the pod itself is gone (a system failure)."""
    if seen.system_error is not None or not request.job.after_script:
        return False
    succeeded = isinstance(decide(seen), Success)
    return {"always": True, "on_success": succeeded, "on_failure": not succeeded}[request.after_script_when]


def base_variables(*, project_dir: str) -> tuple[tuple[str, str], ...]:
    """The predefined variables every job gets, whoever sent it (`exec` or GitLab)."""
    return (
        ("CI", "true"),
        ("CI_SERVER", "yes"),
        ("KUBERUNNER", "true"),
        ("CI_BUILDS_DIR", "/builds"),
        ("CI_PROJECT_DIR", project_dir),
        ("CI_RUNNER_VERSION", __version__),
    )


def choose_strategy(request: JobRequest) -> Strategy:
    return LegacyExecStrategy() if request.legacy_exec else AttachStrategy()


async def run_job(
    *,
    request: JobRequest,
    client: KubeClient,
    settings: ExecutorSettings,
    trace: Trace,
    cancel: asyncio.Event,
    strategy: Strategy | None = None,
) -> JobResult:
    """Run one job in a pod of its own and say how it ended. `strategy` defaults to the one the
    request asks for (attach, or legacy exec); tests and benchmarks pass their own."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.timeout
    strategy = strategy or choose_strategy(request)
    job = JobContext(
        client=client,
        settings=settings,
        trace=trace,
        state=JobState(settings.namespace, _pod_name(settings, request)),
        cancel=cancel,
        plan=StagePlan(git_sources=request.git is not None),
    )
    trace.runner_line(f"Using Kubernetes namespace: {settings.namespace}")
    trace.runner_line(f"Using {strategy.name} strategy to execute scripts...")
    health: asyncio.Task[None] | None = None
    seen = Observation(exit_codes=())
    try:
        await _create_pod(job, request)
        early = await _wait_for_running(job, request, deadline=deadline)
        if early is not None:
            seen = early
        else:
            trace.runner_line(f"Running on {job.state.pod} via {settings.runner_name}...")
            health = asyncio.create_task(_watch_health(job), name=f"{job.state.pod}: health")
            await strategy.open(job)
            seen = await _run_user_stages(job, strategy, request, deadline=deadline)
            if after_script_due(request, seen):
                await _run_after_script(job, strategy, request.after_script_timeout)
    except KubeError as exc:
        seen = Observation(seen.exit_codes, system_error=f"Kubernetes API: {exc}")
    except TransportError as exc:
        seen = Observation(seen.exit_codes, system_error=str(exc))
    finally:
        if health is not None:
            health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await health
        await strategy.close()
        await _delete_pod(job)
    return decide(seen)


async def _run_user_stages(
    job: JobContext, strategy: Strategy, request: JobRequest, *, deadline: float
) -> Observation:
    codes: list[int | None] = []
    for stage in USER_STAGES:
        with _section(job, stage):
            end = await strategy.run_stage(job, stage, deadline=deadline)
        match end:
            case Exited(exit_code=code):
                codes.append(code)
                if code != 0:
                    break
            case Lost(reason=reason):
                return Observation(tuple(codes), system_error=reason)
            case Stopped(canceled=True):
                job.trace.runner_line("Job canceled: the running stage was stopped", level="error")
                return Observation(tuple(codes), canceled=True)
            case Stopped(canceled=False):
                job.trace.runner_line("Job timed out: the running stage was stopped", level="error")
                return Observation(tuple(codes), timed_out_after=request.timeout)
    return Observation(tuple(codes))


@contextlib.contextmanager
def _section(job: JobContext, stage: str) -> Iterator[None]:
    """The stage's trace section: its header, then its output, closed whatever happens."""
    job.trace.section_start(stage, job.plan.header(stage))
    try:
        yield
    finally:
        job.trace.section_end(stage)


async def _run_after_script(job: JobContext, strategy: Strategy, allowed: float | None) -> None:
    loop = asyncio.get_running_loop()
    with _section(job, "after_script"):
        end = await strategy.run_stage(
            job, "after_script", deadline=loop.time() + (allowed or job.settings.after_script_timeout)
        )
    match end:
        case Exited(exit_code=0):
            pass
        case Exited(exit_code=code):
            job.trace.runner_line(f"WARNING: after_script failed with exit code {code}", level="warning")
        case Lost(reason=reason):
            job.trace.runner_line(f"WARNING: after_script did not finish: {reason}", level="warning")
        case Stopped(canceled=False):
            job.trace.runner_line("WARNING: after_script timed out", level="warning")
        case Stopped():
            pass


def _pod_name(settings: ExecutorSettings, request: JobRequest) -> str:
    slug = dns_slug(request.job.name, limit=30) or "job"
    return f"{settings.runner_name}-{slug}-{secrets.token_hex(4)}"


async def _create_pod(job: JobContext, request: JobRequest) -> None:
    settings = job.settings
    image = request.job.image or settings.image
    helper = HELPER_CONTAINER in job.plan.containers
    design = PodDesign(
        name=job.state.pod,
        namespace=settings.namespace,
        image=image,
        runner_name=settings.runner_name,
        job_id=request.job_id,
        job_name=request.job.name,
        paths=settings.paths,
        active_deadline_seconds=int(request.timeout + settings.after_script_timeout + 60),
        memory_limit=settings.memory_limit,
        helper_image=(settings.helper_image or image) if helper else None,
    )
    client, namespace, budget = job.client, settings.namespace, settings.api_budget
    pod_body = build_pod(design)
    pod = await retrying.create_once(
        client,
        create=lambda: client.create_pod(namespace, pod_body),
        read=lambda: client.get_pod(namespace, design.name),
        budget=budget,
        what=f"creating pod {design.name}",
    )
    secret_body = build_secret(pod=pod, files=stage_files(job, request))
    await retrying.create_once(
        client,
        create=lambda: client.create_secret(namespace, secret_body),
        read=lambda: client.get_secret(namespace, secret_body["metadata"]["name"]),
        budget=budget,
        what=f"creating the scripts secret of {design.name}",
    )


def stage_files(job: JobContext, request: JobRequest) -> dict[str, bytes]:
    paths = job.settings.paths
    archive_name = "project.tar.gz"
    variables = (
        *request.variables,
        *((key, paths.script(_variable_file(key))) for key, _ in request.variable_files),
    )
    files = {
        "get_sources": _get_sources(request, paths.script(archive_name)).encode(),
        "step_script": render.render_user_stage(
            commands=[*request.job.before_script, *request.job.script],
            variables=variables,
            project_dir=request.project_dir,
        ).encode(),
        "after_script": render.render_user_stage(
            commands=request.job.after_script, variables=variables, project_dir=request.project_dir
        ).encode(),
        "kill_stage": render.KILL_STAGE.encode(),
    }
    if request.project_archive is not None:
        files[archive_name] = request.project_archive
    for key, content in request.variable_files:
        files[_variable_file(key)] = content
    return files


def _variable_file(key: str) -> str:
    # Secret keys allow [-._a-zA-Z0-9]; variable names are a subset.
    return f"variable.{key}"


def _get_sources(request: JobRequest, archive_path: str) -> str:
    git = request.git
    if git is None:
        return render.render_get_sources(
            archive=archive_path if request.project_archive is not None else None,
            project_dir=request.project_dir,
        )
    # Runs in the helper container (see `stages`), which shares the builds volume with the build one.
    return render.render_git_sources(
        repo_url=git.repo_url,
        ref=git.ref,
        ref_type=git.ref_type,
        sha=git.sha,
        depth=git.depth,
        strategy=git.strategy,
        checkout=git.checkout,
        project_dir=request.project_dir,
    )


async def _wait_for_running(job: JobContext, request: JobRequest, *, deadline: float) -> Observation | None:
    """None once every container runs; otherwise how the job ended before it could start."""
    loop = asyncio.get_running_loop()
    limit = min(deadline, loop.time() + job.settings.pod_start_timeout)
    name = f"{job.state.namespace}/{job.state.pod}"
    last_message = ""

    async def watch() -> str | None:
        nonlocal last_message
        backoff = Backoff(budget=job.settings.api_budget)
        while True:
            try:
                async for event_type, pod in job.client.watch_pod(job.state.namespace, job.state.pod):
                    backoff.healthy()
                    state = podhealth.assess(event_type, pod, containers=job.plan.containers)
                    if isinstance(state, podhealth.Ready):
                        return None
                    if isinstance(state, podhealth.Broken):
                        return state.reason
                    if state.message != last_message:
                        last_message = state.message
                        job.trace.runner_line(
                            f"Waiting for pod {name} to be running, status is {state.message}"
                        )
            except KubeError as exc:
                if not retrying.is_transient(exc):
                    raise
                delay = backoff.failed(loop.time())
                if delay is None:
                    return f"the Kubernetes API stayed unreachable: {exc}"
                await asyncio.sleep(delay)

    watcher = asyncio.ensure_future(watch())
    try:
        done = await first_of([watcher, job.cancel.wait()], within=limit - loop.time())
    finally:
        watcher.cancel()
    if watcher in done:
        reason = watcher.result()
        return None if reason is None else Observation((), system_error=reason)
    if job.cancel.is_set():
        return Observation((), canceled=True)
    if limit >= deadline:
        return Observation((), timed_out_after=request.timeout)
    return Observation((), system_error=f"timed out waiting for pod {name} to start ({last_message})")


async def _watch_health(job: JobContext) -> None:
    reason = await podhealth.wait_until_broken(
        client=job.client,
        namespace=job.state.namespace,
        name=job.state.pod,
        backoff=Backoff(budget=job.settings.api_budget),
        containers=job.plan.containers,
    )
    job.mark_broken(reason)


async def _delete_pod(job: JobContext) -> None:
    namespace, name = job.state.namespace, job.state.pod
    try:
        await retrying.retry(
            lambda: job.client.delete_pod(namespace, name, grace_seconds=0),
            budget=job.settings.api_budget,
            what=f"deleting pod {name}",
        )
    except NotFound:
        pass
    except KubeError as exc:
        job.trace.runner_line(f"WARNING: could not delete pod {name}: {exc}", level="warning")
