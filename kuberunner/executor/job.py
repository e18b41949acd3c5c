"""One job's flow, from pod creation to deletion, whatever strategy runs its stages.

What the bytes are lives in `shell`, how they travel in `kube` and the strategies, how the ending
is judged in `results.decide`. The strategy and the stage plan (the pod's containers, which one runs
each stage) are chosen once, here. Each stage is a trace section, as GitLab folds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Literal

from kuberunner import __version__
from kuberunner.executor import overwrites, poddeletion, podhealth, retrying, started_events
from kuberunner.executor.attach import AttachStrategy
from kuberunner.executor.backoff import Backoff
from kuberunner.executor.file_transport import TransportError
from kuberunner.executor.legacy_exec import LegacyExecStrategy
from kuberunner.executor.pod_options import PodOptionsError, apply_pod_options
from kuberunner.executor.podspec import PodDesign, build_pod, build_secret, dns_slug
from kuberunner.executor.results import JobResult, Observation, Success, decide
from kuberunner.executor.services import ServiceContainer, render_wait, report_failed
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.executor.stages import HELPER_CONTAINER, USER_STAGES, WAIT_FOR_SERVICES, StagePlan
from kuberunner.executor.strategy import Exited, JobContext, JobState, Lost, StageEnd, Stopped, Strategy
from kuberunner.executor.transfer_stages import (
    after_script_stage,
    after_script_stage_for,
    private_files,
    run_stages_after,
    script_files,
    stages_before_script,
)
from kuberunner.executor.waiting import first_of
from kuberunner.job.spec import JobSpec
from kuberunner.job.variables import variable_problem
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import CertificateRejected, KubeError, NotFound
from kuberunner.shell import render
from kuberunner.shell.transfers import Transfers
from kuberunner.trace import Trace

log = logging.getLogger(__name__)

LEGACY_FLAG = "FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY"


@dataclass(frozen=True, slots=True)
class GitSource:
    """Where get_sources fetches the project from, for jobs from a GitLab server."""

    repo_url: str
    """Without credentials: it ends up in .git/config, where the job can read it."""
    sha: str
    ref: str
    ref_type: str = "branch"
    depth: int = 0
    """GIT_DEPTH; 0: full history."""
    strategy: str = "clone"
    """GIT_STRATEGY: clone, fetch or none."""
    checkout: bool = True
    """GIT_CHECKOUT."""
    auth_header: str = ""
    """`Authorization: …` for repo_url's server: handed to git in a 0600 file removed after the
    fetch, never in argv, the URL or .git/config."""
    ca_pem: bytes = b""
    """The CA bundle of repo_url's server (config.toml's tls-ca-file), when the system's is not enough."""


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
    transfers: Transfers | None = None
    """Artifacts and cache the helper moves before and after the script (`transfer_stages`)."""
    services: tuple[ServiceContainer, ...] = ()
    services_timeout: int = 30
    """Seconds the helper waits for the services' ports (`wait_for_services_timeout`)."""


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
    progress: Callable[[str, JobState], None] | None = None,
) -> JobResult:
    """Run one job in a pod of its own and say how it ended. `strategy` defaults to the one the
    request asks for (attach, or legacy exec); tests and benchmarks pass their own. `progress` hears
    of each step a restarted runner needs to take the job over (`resume.resume_job`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.timeout
    strategy = strategy or choose_strategy(request)
    try:
        settings = _with_overwrites(settings, request, trace)
    except overwrites.OverwriteRefused as exc:
        trace.runner_line(f"ERROR: Preparation failed: {exc}", level="error")
        return decide(Observation((), system_error=str(exc)))
    job = JobContext(
        client=client,
        settings=settings,
        trace=trace,
        state=JobState(settings.namespace, _pod_name(settings, request)),
        cancel=cancel,
        plan=StagePlan(git_sources=request.git is not None),
        progress=progress,
    )
    # A sink that fails (a full disk, a closed stdout) ends the job at once as a system failure.
    trace.on_failure(job.mark_broken)
    trace.runner_line(f"Using Kubernetes namespace: {settings.namespace}")
    trace.runner_line(f"Using {strategy.name} strategy to execute scripts...")
    health: asyncio.Task[None] | None = None
    seen = Observation(exit_codes=())
    if cancel.is_set():
        trace.runner_line("Job canceled before its pod was created", level="error")
        return decide(Observation((), canceled=True))
    problems = [
        problem
        for key, value in (*request.variables, *((key, "") for key, _ in request.variable_files))
        if (problem := variable_problem(key, value)) is not None
    ]
    if problems:
        # `exec` and `run` refuse these earlier, naming where they came from; this is the last gate.
        return decide(Observation((), system_error=problems[0]))
    if job.broken.done():
        return decide(Observation((), system_error=job.broken.result()))
    try:
        early = await _start_pod(job, request, deadline=deadline)
        if early is not None:
            seen = early
        else:
            trace.runner_line(f"Running on {job.state.pod} via {settings.runner_name}...")
            health = asyncio.create_task(_watch_health(job), name=f"{job.state.pod}: health")
            await strategy.open(job)
            seen = await _run_user_stages(job, strategy, request, deadline=deadline)
            job.state.outcome = seen
            job.report("stages_done")
            if after_script_due(request, seen):
                await _run_after_script(
                    job, strategy, request.after_script_timeout, stage=after_script_stage(seen)
                )
            present = set(script_files(request.transfers, project_dir=request.project_dir))
            seen = await run_stages_after(job, strategy, request.transfers, seen, present=present)
            job.state.outcome = seen
            job.report("finished")
    except KubeError as exc:
        reason = f"Kubernetes API: {exc}"
        if health is not None:
            reason = await podhealth.reason_or(job.broken, reason)
        seen = Observation(seen.exit_codes, system_error=reason)
    except TransportError as exc:
        reason = str(exc)
        if health is not None:
            reason = await podhealth.reason_or(job.broken, reason)
        seen = Observation(seen.exit_codes, system_error=reason)
    except PodOptionsError as exc:
        seen = Observation(seen.exit_codes, system_error=str(exc))
    finally:
        await _despite_cancel(_clean_up(job, strategy, health))
    if trace.failure is not None and seen.system_error is None:
        seen = dataclasses.replace(seen, system_error=trace.failure)
    return decide(seen)


async def _clean_up(job: JobContext, strategy: Strategy, health: asyncio.Task[None] | None) -> None:
    if health is not None:
        health.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await health
    await strategy.close()
    await _delete_pod(job)


async def _despite_cancel(work: Coroutine[object, object, None]) -> None:
    """Run `work` to its end even when the caller drops the job meanwhile (a second Ctrl-C, GitLab's
    `canceled`): the pod must be deleted whatever happens. The cancel is passed on afterwards."""
    task = asyncio.ensure_future(work)
    dropped = False
    while True:
        try:
            await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            dropped = True
    if dropped:
        raise asyncio.CancelledError


async def _run_user_stages(
    job: JobContext, strategy: Strategy, request: JobRequest, *, deadline: float
) -> Observation:
    codes: list[int | None] = []
    waits = (WAIT_FOR_SERVICES,) if _waits_for_services(request) else ()
    for stage in (USER_STAGES[0], *waits, *stages_before_script(request.transfers), *USER_STAGES[1:]):
        with _section(job, stage):
            end = await strategy.run_stage(job, stage, deadline=deadline)
        match end:
            case Exited(exit_code=code) if stage == WAIT_FOR_SERVICES:
                if 0 < code <= len(request.services):
                    await report_failed(job, request.services, code - 1)
            case _:
                ended = await user_stage_ended(job, end, codes, job_timeout=request.timeout)
                if ended is not None:
                    return ended
    return Observation(tuple(codes))


async def user_stage_ended(
    job: JobContext, end: StageEnd, codes: list[int | None], *, job_timeout: float
) -> Observation | None:
    """What a user stage's end means for the job, for a fresh run and an adopted one alike: None to
    go on to the next stage, else the observation the job ends with. `codes` gets the stage's code."""
    match end:
        case Exited(exit_code=code):
            codes.append(code)
            job.state.outcome = Observation(tuple(codes))
            job.report("stage_ended")
            return None if code == 0 else Observation(tuple(codes))
        case Lost(reason=reason):
            return Observation(tuple(codes), system_error=await podhealth.reason_or(job.broken, reason))
        case Stopped(canceled=True):
            job.trace.runner_line("Job canceled: the running stage was stopped", level="error")
            return Observation(tuple(codes), canceled=True)
        case Stopped(canceled=False):
            job.trace.runner_line("Job timed out: the running stage was stopped", level="error")
            return Observation(tuple(codes), timed_out_after=job_timeout)
    raise AssertionError(f"unknown stage end {end!r}")


@contextlib.contextmanager
def _section(job: JobContext, stage: str) -> Iterator[None]:
    """The stage's trace section: its header, then its output, closed whatever happens."""
    job.trace.section_start(stage, job.plan.header(stage))
    try:
        yield
    finally:
        job.trace.section_end(stage)


async def _run_after_script(
    job: JobContext, strategy: Strategy, allowed: float | None, *, stage: str = "after_script"
) -> None:
    """after_script is how a job cleans up after a cancel, so the cancel that ended the job must not
    stop it too: it runs with a cancel of its own that nothing sets. Only its own timeout stops it,
    or the caller dropping the job (a second Ctrl-C, GitLab's `canceled`), which cancels run_job."""
    loop = asyncio.get_running_loop()
    cleanup = dataclasses.replace(job, cancel=asyncio.Event())
    with _section(job, "after_script"):
        end = await strategy.run_stage(
            cleanup, stage, deadline=loop.time() + (allowed or job.settings.after_script_timeout)
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
    job.report("stage_ended")


def _with_overwrites(settings: ExecutorSettings, request: JobRequest, trace: Trace) -> ExecutorSettings:
    """The settings this job runs with, once its KUBERNETES_* variables are judged (`overwrites`)."""
    resolved = overwrites.resolve(
        settings.pod,
        namespace=settings.namespace,
        variables=request.variables,
        image=request.job.image,
        default_image=settings.image,
        service_images=[service.image for service in request.services],
        image_pull_policy=request.job.image_pull_policy,
        service_pull_policies=[(service.image, service.pull_policy) for service in request.services],
    )
    for note in resolved.notes:
        trace.runner_line(note)
    return dataclasses.replace(settings, namespace=resolved.namespace, pod=resolved.options)


def _pod_name(settings: ExecutorSettings, request: JobRequest) -> str:
    slug = dns_slug(request.job.name, limit=30) or "job"
    return f"{settings.runner_name}-{slug}-{secrets.token_hex(4)}"


async def _start_pod(job: JobContext, request: JobRequest, *, deadline: float) -> Observation | None:
    """Create the pod and wait until it runs: None then, else how the job ended before it started.

    With several pull policies (`pull_policy = ["never", "if-not-present"]`), as in GitLab Runner, a
    pod whose image cannot be pulled is deleted and made again, under a new name, with the next
    policy; the last one's failure is the job's."""
    policies = job.settings.pod.pull_policy or (None,)
    for attempt, policy in enumerate(policies, start=1):
        if attempt > 1:
            job.state.pod = _pod_name(job.settings, request)
        job.report("pod")
        await _create_pod(job, request, pull_policy=policy)
        ended = await _wait_for_running(job, request, deadline=deadline)
        if not isinstance(ended, podhealth.Broken):
            return ended
        if not ended.image_pull or attempt == len(policies):
            return Observation((), system_error=ended.reason)
        job.trace.runner_line(
            f'WARNING: Failed to start the pod with pull policy "{policy}": {ended.reason}', level="warning"
        )
        await _delete_pod(job)
        if job.cancel.is_set():
            return Observation((), canceled=True)
        job.trace.runner_line(
            f'Attempt #{attempt + 1}: trying pull policy "{policies[attempt]}" for image '
            f'"{request.job.image or job.settings.image}"'
        )
    raise AssertionError("unreachable: the last pull policy returns")


async def _create_pod(job: JobContext, request: JobRequest, *, pull_policy: str | None) -> None:
    """`pull_policy`: the one this attempt uses, out of the configured list (None: none configured)."""
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
        owner=settings.owner,
        services=request.services,
    )
    client, namespace, budget = job.client, settings.namespace, settings.api_budget
    files = stage_files(job, request)
    private = private_files(request.transfers)
    design = dataclasses.replace(
        design, script_keys=tuple(k for k in files if k not in private), private_keys=tuple(private)
    )
    options = settings.pod
    if pull_policy is not None:
        options = dataclasses.replace(options, pull_policy=(pull_policy,))
    pod_body = apply_pod_options(build_pod(design), options)
    pod = await retrying.create_once(
        client,
        create=lambda: client.create_pod(namespace, pod_body),
        read=lambda: client.get_pod(namespace, design.name),
        budget=budget,
        what=f"creating pod {design.name}",
    )
    secret_body = build_secret(pod=pod, files=files)
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
        "get_sources": _get_sources(request, paths.script(archive_name), paths.script(GIT_CA)).encode(),
        "step_script": render.render_user_stage(
            commands=[*request.job.before_script, *request.job.script],
            variables=(("CI_JOB_STATUS", "running"), *variables),
            project_dir=request.project_dir,
        ).encode(),
        "kill_stage": render.KILL_STAGE.encode(),
    }
    for status in ("success", "failed", "canceled"):
        # One after_script per ending: the Secret is written before the job's ending is known.
        stage = after_script_stage_for(status)
        files[stage] = render.render_user_stage(
            commands=request.job.after_script,
            variables=(*variables, ("CI_JOB_STATUS", status)),
            project_dir=request.project_dir,
        ).encode()
    files.update(script_files(request.transfers, project_dir=request.project_dir))
    if _waits_for_services(request):
        files[WAIT_FOR_SERVICES] = render_wait(request.services, timeout=request.services_timeout).encode()
    files.update(private_files(request.transfers))
    if request.project_archive is not None:
        files[archive_name] = request.project_archive
    for key, content in request.variable_files:
        files[_variable_file(key)] = content
    if request.git is not None and request.git.ca_pem:
        files[GIT_CA] = request.git.ca_pem
    return files


def _waits_for_services(request: JobRequest) -> bool:
    return any(service.ports for service in request.services)


def _variable_file(key: str) -> str:
    # Secret keys allow [-._a-zA-Z0-9]; variable names are a subset.
    return f"variable.{key}"


GIT_CA = "git-ca.pem"


def _get_sources(request: JobRequest, archive_path: str, ca_path: str) -> str:
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
        auth_header=git.auth_header,
        ca_file=ca_path if git.ca_pem else "",
    )


async def _wait_for_running(
    job: JobContext, request: JobRequest, *, deadline: float
) -> Observation | podhealth.Broken | None:
    """None once every container runs; otherwise how the job ended before it could start (Broken:
    the pod itself says why, perhaps an image another pull policy may get)."""
    loop = asyncio.get_running_loop()
    limit = min(deadline, loop.time() + job.settings.pod_start_timeout)
    name = f"{job.state.namespace}/{job.state.pod}"
    last_message = ""

    def waiting(message: str) -> None:
        nonlocal last_message
        last_message = message
        job.trace.runner_line(f"Waiting for pod {name} to be running, status is {message}")

    async def watch() -> podhealth.Broken | None:
        return await podhealth.wait_until_ready(
            client=job.client,
            namespace=job.state.namespace,
            name=job.state.pod,
            backoff=Backoff(budget=job.settings.api_budget),
            containers=job.plan.containers,
            on_waiting=waiting,
            liveness=podhealth.starting(job.settings.pod_poll_interval),
        )

    watcher = asyncio.ensure_future(watch())
    started = asyncio.ensure_future(
        started_events.all_started(
            job.client, namespace=job.state.namespace, pod=job.state.pod, containers=job.plan.containers
        )
    )
    try:
        done = await first_of([watcher, started, job.cancel.wait()], within=limit - loop.time())
    finally:
        watcher.cancel()
        started.cancel()
    if watcher in done:
        return watcher.result()
    if started in done:
        return started.result()
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
    grace = poddeletion.cleanup_grace(job.settings.pod.cleanup_grace_period_seconds)
    try:
        await retrying.retry(
            lambda: job.client.delete_pod(namespace, name, grace_seconds=grace),
            budget=job.settings.api_budget,
            what=f"deleting pod {name}",
        )
    except (NotFound, CertificateRejected):
        return  # no pod, or no request ever reached the server (the job's error already says why)
    except KubeError as exc:
        job.trace.runner_line(f"WARNING: could not delete pod {name}: {exc}", level="warning")
        return
    within = poddeletion.GONE_WITHIN + grace
    if not await poddeletion.wait_until_gone(job.client, namespace, name, within=within):
        waited = f"{within:.0f} s"
        job.trace.runner_line(
            f"WARNING: pod {name} still exists {waited} after its deletion", level="warning"
        )
