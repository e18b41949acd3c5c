"""`kuberunner exec`: run jobs of a local .gitlab-ci.yml on a cluster, the embedded one by default.

Plans the pipeline (kuberunner.pipeline.plan: includes, rules, stages, needs, parallel), chooses the
cluster (explicit kubeconfig, config.toml, in-cluster, default kubeconfig, else the embedded cluster
started in this process), builds each job's variables and project archive, and runs the jobs as
GitLab would (kuberunner.pipeline.scheduler), each in its own pod, several at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from kuberunner import __version__
from kuberunner.config import RunnerEntry, load_runner_config
from kuberunner.errors import BadInput
from kuberunner.executor import results
from kuberunner.executor.exec_transfers import ExecDependency, exec_transfers
from kuberunner.executor.job import LEGACY_FLAG, JobRequest, base_variables, run_job
from kuberunner.executor.object_server import ObjectServer
from kuberunner.executor.orphans import exec_owner, sweep_exec_orphans
from kuberunner.executor.podspec import dns_slug
from kuberunner.executor.project import ProjectTooLarge, archive_directory
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.job.spec import JobSpec
from kuberunner.job.variables import MASKED_VARS_ENV, variable_problem
from kuberunner.kube import config as kube_config
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeError
from kuberunner.pipeline.output import Console, list_plan
from kuberunner.pipeline.plan.build import PlanRequest, plan_pipeline
from kuberunner.pipeline.plan.model import Plan, PlannedJob
from kuberunner.pipeline.repository import read_repository
from kuberunner.pipeline.scheduler import JobEnd, Outcome, run_plan
from kuberunner.trace import FileSink, Sink, SinkError, StreamSink, Trace

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExecOptions:
    file: Path
    jobs: tuple[str, ...] = ()
    config: Path | None = None
    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None
    variables: tuple[tuple[str, str], ...] = ()
    masked: tuple[tuple[str, str], ...] = ()
    """From `--masked-var`, whose values `ps` shows: the file and environment forms below do not."""
    masked_files: tuple[Path, ...] = ()
    """`--masked-var-file`: KEY=VALUE lines."""
    inputs: tuple[tuple[str, str], ...] = ()
    """`--input NAME=VALUE`: values for the pipeline file's own `spec:inputs`."""
    environ: Mapping[str, str] = field(default_factory=dict)
    """The runner's environment, for MASKED_VARS_ENV."""
    trace_file: Path | None = None
    timeout: float | None = None
    color: bool = False
    log_transport: Literal["file", "kubelet"] | None = None
    """Overrides config.toml's `log_transport`."""
    list_only: bool = False
    """`--list`: print the pipeline (stage, job, when, needs) and run nothing."""
    manual: bool = False
    """`--manual`: run manual jobs too (a manual job named on the command line runs anyway)."""
    concurrency: int | None = None
    """How many jobs run at once; None: the CPU count."""


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}


def masked_variables(options: ExecOptions) -> tuple[tuple[str, str], ...]:
    """Every masked variable: `--masked-var`, then each `--masked-var-file`, then MASKED_VARS_ENV."""
    found = list(options.masked)
    for path in options.masked_files:
        found += read_masked_file(path)
    for name in options.environ.get(MASKED_VARS_ENV, "").replace(",", " ").split():
        if name not in options.environ:
            raise BadInput(f"{MASKED_VARS_ENV} names {name!r}, which is not set in the environment")
        problem = variable_problem(name, options.environ[name])
        if problem is not None:
            raise BadInput(f"{MASKED_VARS_ENV}: {problem}")
        found.append((name, options.environ[name]))
    return tuple(found)


def read_masked_file(path: Path) -> list[tuple[str, str]]:
    """KEY=VALUE lines; blank lines and lines starting with # are skipped. The value is the rest of
    the line as it is (no quotes, no escapes), so any value but one with a newline fits."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadInput(f"--masked-var-file {path}: {reason}") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise BadInput(f"{path}:{number}: expected KEY=VALUE")
        problem = variable_problem(key, value)
        if problem is not None:
            raise BadInput(f"{path}:{number}: {problem}")
        pairs.append((key, value))
    return pairs


def legacy_exec_wanted(
    *, environ: dict[str, str], variables: Sequence[tuple[str, str]], feature_flags: dict[str, bool]
) -> bool:
    """FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY from, in rising precedence: config.toml's
    [runners.feature_flags], the runner's environment, the job's variables (as in GitLab Runner)."""
    wanted = feature_flags.get(LEGACY_FLAG, False)
    if LEGACY_FLAG in environ:
        wanted = environ[LEGACY_FLAG] in _TRUE
    for key, value in variables:
        if key == LEGACY_FLAG:
            wanted = value in _TRUE
    return wanted


def job_variables(
    *,
    job: JobSpec,
    job_id: str,
    project_name: str,
    project_dir: str,
    extra: Sequence[tuple[str, str]],
    predefined: Sequence[tuple[str, str]] = (),
) -> tuple[tuple[str, str], ...]:
    local = (("CI_JOB_ID", job_id), ("CI_JOB_NAME", job.name), ("CI_PROJECT_NAME", project_name))
    return (*base_variables(project_dir=project_dir), *local, *predefined, *job.variables, *extra)


EMBEDDED_HOST = "embedded"
"""`[runners.kubernetes] host = "embedded"`: kuberunner's own spelling for "start the embedded cluster"."""
LOOKED_FOR = (
    "--kubeconfig, [runners.kubernetes] host, the in-cluster service account, $KUBECONFIG or ~/.kube/config"
)


class NoClusterConfigured(Exception):
    """`run` found no cluster, and never falls back to the embedded one on its own."""


@contextlib.asynccontextmanager
async def cluster_for(
    options: ExecOptions, runner: RunnerEntry | None, *, embedded_by_default: bool = True
) -> AsyncIterator[kube_config.ClusterConfig]:
    """The cluster to use, in GitLab Runner's order. `host = "embedded"` asks for the embedded cluster;
    without any setting it is used only when `embedded_by_default` (exec), else NoClusterConfigured (run:
    a service missing $KUBECONFIG must not run GitLab's jobs on its own host)."""
    if options.kubeconfig is not None or options.context is not None:
        yield await kube_config.load_kubeconfig(options.kubeconfig, options.context)
        return
    explicit_embedded = False
    if runner is not None:
        k8s = runner.kubernetes
        explicit_embedded = k8s.host == EMBEDDED_HOST
        if k8s.host and not explicit_embedded:
            yield kube_config.from_runner_settings(
                host=k8s.host,
                cert_file=k8s.cert_file,
                key_file=k8s.key_file,
                ca_file=k8s.ca_file,
                bearer_token=k8s.bearer_token,
                namespace=k8s.namespace or "default",
            )
            return
    if not explicit_embedded:
        found = kube_config.in_cluster()
        if found is not None:
            yield found
            return
        if kube_config.default_kubeconfig_exists():
            yield await kube_config.load_kubeconfig(None, None)
            return
        if not embedded_by_default:
            raise NoClusterConfigured(
                f"no cluster configured: looked for {LOOKED_FOR} ({kube_config.kubeconfig_path()}); "
                f'set [runners.kubernetes] host = "{EMBEDDED_HOST}" to run jobs on this machine'
            )
        print(
            f"kuberunner: no cluster configured (looked for {LOOKED_FOR}); "
            "using the embedded single-node cluster on this machine",
            file=sys.stderr,
        )
    from kuberunner.cluster.node import hidden  # only a user without a cluster pays for it
    from kuberunner.cluster.server import EmbeddedCluster

    # The runner's own secrets live on the same host as the jobs: keep them out of every container.
    for secret_file in (options.config, *options.masked_files):
        if secret_file is not None:
            hidden.hide_from_containers(secret_file)
    async with EmbeddedCluster() as cluster:
        yield await kube_config.load_kubeconfig(cluster.kubeconfig_path, None)


@dataclass(frozen=True, slots=True)
class _Session:
    """What every job of one `kuberunner exec` shares."""

    options: ExecOptions
    runner: RunnerEntry | None
    client: KubeClient
    settings: ExecutorSettings
    project_root: Path
    archive: bytes
    interrupts: Interrupts
    objects: ObjectServer | None = None
    """Stands in for GitLab's artifacts endpoints and the cache store (`exec_transfers`), when a job
    of the run has artifacts or a cache."""
    artifact_jobs: dict[str, int] = field(default_factory=dict)
    """Job name → id, for the jobs of this run that uploaded an archive."""
    dotenv_jobs: dict[str, int] = field(default_factory=dict)
    """Job name → id, for the jobs of this run that uploaded a dotenv report."""
    predefined: tuple[tuple[str, str], ...] = ()
    """What a local run knows of GitLab's predefined variables (the git checkout, the pipeline)."""


def executor_settings(runner: RunnerEntry | None, namespace: str) -> ExecutorSettings:
    """config.toml's values; without `image`/`helper_image` there, $KUBERNETES_IMAGE/$KUBERNETES_HELPER_IMAGE
    (gitlab-runner's environment names for those flags), so a cluster that cannot pull (an air-gapped or
    CI cluster) runs jobs that name no image."""
    defaults = ExecutorSettings()
    image = os.environ.get("KUBERNETES_IMAGE") or defaults.image
    helper_image = os.environ.get("KUBERNETES_HELPER_IMAGE") or None
    if runner is None:
        return ExecutorSettings(namespace=namespace, image=image, helper_image=helper_image)
    k8s = runner.kubernetes
    return ExecutorSettings(
        namespace=namespace,
        image=k8s.image or image,
        runner_name=dns_slug(runner.name, limit=20) or defaults.runner_name,
        pod_start_timeout=float(k8s.poll_timeout),
        pod_poll_interval=float(k8s.poll_interval),
        log_transport=k8s.log_transport,
        memory_limit=k8s.memory_limit,
        helper_image=k8s.helper_image or helper_image,
        api_budget=float(k8s.api_unreachable_timeout),
        pod=k8s.pod,
    )


class Interrupts:
    """SIGINT and SIGTERM for the whole of `kuberunner exec`: the first cancels (the running stage is
    stopped, after_script still runs, the pod is deleted), the second stops at once."""

    def __init__(self, *, already: int = 0) -> None:
        self.cancel = asyncio.Event()
        self.abort = asyncio.Event()
        self.count = 0
        for _ in range(already):
            self.received()

    def received(self) -> None:
        self.count += 1
        self.cancel.set()
        if self.count >= 2:
            self.abort.set()

    def late(self, signum: int, frame: object) -> None:
        """The handler once the jobs are over: counted, nothing more to stop."""
        self.count += 1


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_exec(options: ExecOptions, *, signals_so_far: Sequence[int] = ()) -> int:
    """Runs the jobs; returns the exit status of the first job that did not succeed (0 if all did).

    `signals_so_far` are the SIGINT/SIGTERM the command received before this ran (see `cli`): they
    count as if they came now, so a Ctrl-C during start-up cancels (130) instead of being lost.
    """
    interrupts = Interrupts(already=len(signals_so_far))
    loop = asyncio.get_running_loop()
    for signum in _SIGNALS:
        loop.add_signal_handler(signum, interrupts.received)
    try:
        return await _run_jobs(options, interrupts)
    finally:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)
            # Not back to KeyboardInterrupt: the jobs are over, a late signal changes nothing.
            signal.signal(signum, interrupts.late)


async def _run_jobs(options: ExecOptions, interrupts: Interrupts) -> int:
    options = replace(options, masked=masked_variables(options), masked_files=())
    project_root = options.file.resolve().parent
    repository = read_repository(project_root)
    plan = plan_pipeline(
        PlanRequest(
            file=options.file,
            variables={**dict(repository.variables), **dict(options.variables), **dict(options.masked)},
            names=options.jobs,
            manual=options.manual,
            changed=repository.changed,
            inputs=dict(options.inputs),
        )
    )
    for warning in plan.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    if options.list_only:
        sys.stdout.write(list_plan(plan))
        return 0
    if plan.workflow_excluded or not plan.jobs:
        why = "workflow:rules exclude this pipeline" if plan.workflow_excluded else "rules exclude every job"
        print(f"kuberunner: no job to run: {why}", file=sys.stderr)
        return 0
    runner_config = load_runner_config(options.config) if options.config is not None else None
    runner = runner_config.runners[0] if runner_config is not None and runner_config.runners else None
    try:
        archive = archive_directory(project_root)
    except ProjectTooLarge as exc:
        raise BadInput(str(exc)) from exc
    async with cluster_for(options, runner) as cfg, await KubeClient.open(cfg) as client:
        namespace = options.namespace or (runner.kubernetes.namespace if runner else None) or cfg.namespace
        settings = replace(executor_settings(runner, namespace), owner=exec_owner())
        if options.log_transport is not None:
            settings = replace(settings, log_transport=options.log_transport)
        await sweep_exec_orphans(client, namespace)
        async with _objects(plan, runner) as objects:
            predefined = (
                ("GITLAB_CI", "true"),
                ("CI_PIPELINE_ID", str(secrets.randbelow(10**6) + 1)),
                ("CI_PROJECT_PATH", project_root.name),
                ("CI_PROJECT_TITLE", project_root.name),
                *repository.variables,
            )
            session = _Session(
                options,
                runner,
                client,
                settings,
                project_root,
                archive,
                interrupts,
                objects,
                predefined=predefined,
            )
            return await _run_plan(session, plan)


@contextlib.asynccontextmanager
async def _objects(plan: Plan, runner: RunnerEntry | None) -> AsyncIterator[ObjectServer | None]:
    """The run's object server, on loopback (the embedded cluster's pods share this machine's network);
    the cache stays between runs, each run's artifacts go with it."""
    if not any(
        j.spec.transfers and (j.spec.transfers.artifacts or j.spec.transfers.caches) for j in plan.jobs
    ):
        yield None
        return
    directory = (runner.cache.directory if runner is not None else "") or "~/.cache/kuberunner/cache"
    server = ObjectServer(directory, host=runner.cache.listen_address if runner is not None else "127.0.0.1")
    try:
        await server.start()
    except OSError as exc:
        raise BadInput(f"the local cache in {directory}: {exc.strerror or exc}") from exc
    try:
        yield server
    finally:
        await server.close()
        server.forget_jobs()


JOBS_PER_CPU = 4
"""A job's pod does its work on the cluster and the runner mostly waits on its streams, so one job a
CPU left most of a pipeline's stages queued (bench/pipeline.py: 2.96x the critical path on 2 CPUs,
1.15x with 5 at once)."""


def default_concurrency() -> int:
    return JOBS_PER_CPU * (os.cpu_count() or 1)


async def _run_plan(session: _Session, plan: Plan) -> int:
    """One job: its trace goes to stdout and --trace-file as it always did. Several: each line of
    stdout (and of the trace file) is prefixed by its job, with a header per job and a summary."""
    options = session.options
    stdout = StreamSink(sys.stdout.buffer)
    concurrency = options.concurrency or default_concurrency()
    single = len(plan.jobs) == 1
    names = [job.name for job in plan.jobs]
    console = Console(stdout.write, color=options.color, prefix=not single and concurrency > 1, names=names)
    trace_file = FileSink(options.trace_file) if options.trace_file is not None and not single else None
    file_console = (
        Console(trace_file.write, color=False, prefix=concurrency > 1, names=names) if trace_file else None
    )

    class _Events:
        def started(self, job: PlannedJob) -> None:
            if not single:
                _quietly(console.header, job)
                if file_console is not None:
                    _quietly(file_console.header, job)

        def ended(self, outcome: Outcome) -> None:
            # One job that did not run (manual, canceled at start) still says so.
            if not single or outcome.started is None:
                _quietly(console.ended, outcome)
                if file_console is not None:
                    _quietly(file_console.ended, outcome)

    async def run(job: PlannedJob) -> JobEnd:
        sinks: list[Sink] = [console.sink(job.name)]
        if file_console is not None:
            sinks.append(file_console.sink(job.name))
        elif options.trace_file is not None:
            sinks.append(FileSink(options.trace_file))
        return await _run_one(
            session, job.spec, sinks, artifacts_from=plan.artifact_sources(job), stage=job.stage
        )

    try:
        result = await run_plan(
            plan, run_job=run, events=_Events(), concurrency=concurrency, cancel=session.interrupts.cancel
        )
        if not single:
            _quietly(console.summary, result.outcomes, result.exit_status)
            if file_console is not None:
                _quietly(file_console.summary, result.outcomes, result.exit_status)
        return result.exit_status
    finally:
        if trace_file is not None:
            _quietly(trace_file.close)


def _quietly(call: Callable[..., None], *args: object) -> None:
    """A pipeline line for a sink that already failed: the job that met the failure reported it."""
    with contextlib.suppress(SinkError, OSError):
        call(*args)


def _trace(session: _Session, sinks: Sequence[Sink]) -> Trace:
    runner = session.runner
    # Locally the whole output is wanted; a config.toml's output_limit (GitLab's) applies when given.
    limit = runner.kubernetes.output_limit * 1024 if runner is not None else None
    masked = [value for _, value in session.options.masked]
    trace = Trace(color=session.options.color, masked=masked, output_limit=limit)
    for sink in sinks:
        trace.add_sink(sink)
    return trace


def _dotenv_of(session: _Session, names: Sequence[str]) -> list[tuple[str, str]]:
    """The dotenv reports of the jobs this one takes artifacts from become its variables, as in GitLab."""
    objects = session.objects
    if objects is None:
        return []
    found = []
    for name in names:
        if name in session.dotenv_jobs:
            found += objects.dotenv(session.dotenv_jobs[name])
    return found


async def _run_one(
    session: _Session,
    job: JobSpec,
    sinks: Sequence[Sink],
    *,
    artifacts_from: Sequence[str] = (),
    stage: str = "test",
) -> JobEnd:
    options = session.options
    trace = _trace(session, sinks)
    try:
        trace.runner_line(f"Running with kuberunner {__version__}")
        for warning in job.warnings:
            trace.runner_line(f"WARNING: {warning}", level="warning")
        job_id = str(secrets.randbelow(10**9))
        project_dir = f"/builds/{session.project_root.name or 'project'}"
        timeout = options.timeout or job.timeout_seconds or session.settings.default_timeout
        runner_env = tuple(
            (key, value)
            for key, _, value in (
                item.partition("=") for item in (session.runner.environment if session.runner else ())
            )
        )
        variables = job_variables(
            job=job,
            job_id=job_id,
            project_name=session.project_root.name,
            project_dir=project_dir,
            extra=[*_dotenv_of(session, artifacts_from), *runner_env, *options.variables, *options.masked],
            predefined=(*session.predefined, ("CI_JOB_STAGE", stage)),
        )
        flags = session.runner.feature_flags if session.runner is not None else {}
        dependencies = [
            ExecDependency(session.artifact_jobs[name], name)
            for name in artifacts_from
            if name in session.artifact_jobs
        ]
        transfer_warnings: list[str] = []
        transfers, services = exec_transfers(
            job.transfers,
            server=session.objects,
            job_id=int(job_id),
            dependencies=dependencies,
            variables=dict(variables),
            project_dir=project_dir,
            project_root=session.project_root,
            warnings=transfer_warnings,
        )
        for warning in transfer_warnings:
            trace.runner_line(f"WARNING: {warning}", level="warning")
        request = JobRequest(
            job=job,
            job_id=job_id,
            variables=variables,
            project_dir=project_dir,
            project_archive=session.archive,
            timeout=float(timeout),
            legacy_exec=legacy_exec_wanted(
                environ=dict(os.environ), variables=variables, feature_flags=flags
            ),
            transfers=transfers,
            services=services,
        )
        result = await _run_until_aborted(session, request, trace)
        if session.objects is not None and session.objects.has_archive(int(job_id)):
            session.artifact_jobs[job.name] = int(job_id)
        if session.objects is not None and session.objects.dotenv(int(job_id)):
            session.dotenv_jobs[job.name] = int(job_id)
        if session.interrupts.cancel.is_set():
            # Whatever the stages managed before it, a cancel ends `exec` with 130 and no further job.
            result = results.Canceled()
        success = isinstance(result, results.Success)
        trace.runner_line(results.summary_line(result), level="success" if success else "error")
        trace.close()
        if trace.failure is not None:
            # The job log is incomplete, whatever the job did: a system failure, said once on stderr.
            print(f"kuberunner: {trace.failure}", file=sys.stderr)
            return JobEnd(results.exit_status(results.SystemFailure(trace.failure)))
        code = result.exit_code if isinstance(result, results.ScriptFailure) else None
        return JobEnd(results.exit_status(result), code)
    finally:
        trace.close()


async def _run_until_aborted(session: _Session, request: JobRequest, trace: Trace) -> results.JobResult:
    """The job's result; a second signal drops it at once (run_job still deletes its pod on the way out)."""
    interrupts = session.interrupts
    job = asyncio.ensure_future(
        run_job(
            request=request,
            client=session.client,
            settings=session.settings,
            trace=trace,
            cancel=interrupts.cancel,
        )
    )
    aborted = asyncio.ensure_future(interrupts.abort.wait())
    try:
        await asyncio.wait([job, aborted], return_when=asyncio.FIRST_COMPLETED)
    finally:
        aborted.cancel()
    if not job.done():
        trace.runner_line("Canceled again: stopping at once, deleting the pod", level="error")
        job.cancel()
    try:
        return await job
    except asyncio.CancelledError:
        return results.Canceled()
    except KubeError as exc:
        return results.SystemFailure(f"Kubernetes API: {exc}")
