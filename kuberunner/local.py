"""`kuberunner exec`: run jobs of a local .gitlab-ci.yml on a cluster, the embedded one by default.

Chooses the cluster (explicit kubeconfig, config.toml, in-cluster, default kubeconfig, else the
embedded cluster started in this process), builds each job's variables and project archive, and runs
the jobs one after another, stopping at the first that does not succeed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from kuberunner import __version__
from kuberunner.config import RunnerEntry, load_runner_config
from kuberunner.errors import BadInput
from kuberunner.executor import results
from kuberunner.executor.job import LEGACY_FLAG, JobRequest, base_variables, run_job
from kuberunner.executor.podspec import dns_slug
from kuberunner.executor.project import ProjectTooLarge, archive_directory
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.job.gitlab_ci import load_pipeline, select_jobs
from kuberunner.job.spec import JobSpec
from kuberunner.kube import config as kube_config
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeError
from kuberunner.trace import FileSink, StreamSink, Trace

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
    trace_file: Path | None = None
    timeout: float | None = None
    color: bool = False
    log_transport: Literal["file", "kubelet"] | None = None
    """Overrides config.toml's `log_transport`."""


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}


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
    *, job: JobSpec, job_id: str, project_name: str, project_dir: str, extra: Sequence[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    local = (("CI_JOB_ID", job_id), ("CI_JOB_NAME", job.name), ("CI_PROJECT_NAME", project_name))
    return (*base_variables(project_dir=project_dir), *local, *job.variables, *extra)


@contextlib.asynccontextmanager
async def cluster_for(
    options: ExecOptions, runner: RunnerEntry | None
) -> AsyncIterator[kube_config.ClusterConfig]:
    """The cluster to use, in GitLab Runner's order; the embedded one when nothing else is configured."""
    if options.kubeconfig is not None or options.context is not None:
        yield await kube_config.load_kubeconfig(options.kubeconfig, options.context)
        return
    if runner is not None:
        k8s = runner.kubernetes
        if k8s.host:
            yield kube_config.from_runner_settings(
                host=k8s.host,
                cert_file=k8s.cert_file,
                key_file=k8s.key_file,
                ca_file=k8s.ca_file,
                bearer_token=k8s.bearer_token,
                namespace=k8s.namespace or "default",
            )
            return
    found = kube_config.in_cluster()
    if found is not None:
        yield found
        return
    if kube_config.default_kubeconfig_exists():
        yield await kube_config.load_kubeconfig(None, None)
        return
    from kuberunner.cluster.server import EmbeddedCluster  # only a user without a cluster pays for it

    print("kuberunner: no cluster configured; starting the embedded single-node cluster", file=sys.stderr)
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
    cancel: asyncio.Event


def executor_settings(runner: RunnerEntry | None, namespace: str) -> ExecutorSettings:
    if runner is None:
        return ExecutorSettings(namespace=namespace)
    k8s = runner.kubernetes
    defaults = ExecutorSettings()
    return ExecutorSettings(
        namespace=namespace,
        image=k8s.image or defaults.image,
        runner_name=dns_slug(runner.name, limit=20) or defaults.runner_name,
        pod_start_timeout=float(k8s.poll_timeout),
        log_transport=k8s.log_transport,
        memory_limit=k8s.memory_limit,
        helper_image=k8s.helper_image,
        api_budget=float(k8s.api_unreachable_timeout),
    )


async def run_exec(options: ExecOptions) -> int:
    """Runs the jobs; returns the exit status of the first job that did not succeed (0 if all did)."""
    pipeline = load_pipeline(options.file)
    jobs = select_jobs(pipeline, options.jobs)
    for warning in pipeline.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    runner_config = load_runner_config(options.config) if options.config is not None else None
    runner = runner_config.runners[0] if runner_config is not None and runner_config.runners else None
    project_root = options.file.resolve().parent
    try:
        archive = archive_directory(project_root)
    except ProjectTooLarge as exc:
        raise BadInput(str(exc)) from exc
    cancel = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, cancel.set)
    try:
        async with cluster_for(options, runner) as cfg, await KubeClient.open(cfg) as client:
            namespace = (
                options.namespace or (runner.kubernetes.namespace if runner else None) or cfg.namespace
            )
            settings = executor_settings(runner, namespace)
            if options.log_transport is not None:
                settings = replace(settings, log_transport=options.log_transport)
            session = _Session(options, runner, client, settings, project_root, archive, cancel)
            for job in jobs:
                status = await _run_one(session, job)
                if status != 0:
                    return status
            return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _trace(session: _Session) -> Trace:
    options, runner = session.options, session.runner
    # Locally the whole output is wanted; a config.toml's output_limit (GitLab's) applies when given.
    limit = runner.kubernetes.output_limit * 1024 if runner is not None else None
    trace = Trace(color=options.color, masked=[value for _, value in options.masked], output_limit=limit)
    trace.add_sink(StreamSink(sys.stdout.buffer))
    if options.trace_file is not None:
        trace.add_sink(FileSink(options.trace_file))
    return trace


async def _run_one(session: _Session, job: JobSpec) -> int:
    options = session.options
    trace = _trace(session)
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
            extra=[*runner_env, *options.variables, *options.masked],
        )
        flags = session.runner.feature_flags if session.runner is not None else {}
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
        )
        try:
            result = await run_job(
                request=request,
                client=session.client,
                settings=session.settings,
                trace=trace,
                cancel=session.cancel,
            )
        except KubeError as exc:
            result = results.SystemFailure(f"Kubernetes API: {exc}")
        success = isinstance(result, results.Success)
        trace.runner_line(results.summary_line(result), level="success" if success else "error")
        return results.exit_status(result)
    finally:
        trace.close()
