"""`kuberunner run`: ask GitLab for jobs for every `[[runners]]` entry and run each job as a task.

Every entry gets `request_concurrency` request workers. A worker takes a slot under the global
`concurrent` and the entry's `limit` before it asks, so no more jobs than allowed ever run; a job
keeps its slots until its final update is done. After a job the worker asks again at once; after
"no job" or an error it waits `check_interval`. Signals: the first SIGTERM/SIGQUIT/SIGINT stops
taking jobs and lets the running ones finish; a second one stops them at once (their pods are
deleted on the way out).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import ssl
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kuberunner.config import RunnerEntry
from kuberunner.errors import BadInput, ConfigFileError
from kuberunner.executor.object_server import ObjectServer
from kuberunner.gitlab.client import BrokenJob, GitLabClient, GitLabError, Timeouts, Untrusted
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeConfigError
from kuberunner.local import EMBEDDED_HOST, ExecOptions, cluster_for, executor_settings
from kuberunner.runner import logs, system_id, tasks
from kuberunner.runner.adoption import adopt_recorded, sweep_orphans
from kuberunner.runner.gitlab_job import JobEnv, fail_broken_job, handle_job
from kuberunner.runner.journal import DIRECTORY_NAME, Journal, owner_label
from kuberunner.runner.metrics import NO_WATCH, EntryWatch, RunnerMetrics, short_token
from kuberunner.runner.metrics_server import ListenAddress, MetricsServer, parse_listen_address
from kuberunner.runner.settings import PollSettings, load_run_settings

log = logging.getLogger("kuberunner.runner")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT)
FAILED = 1


@dataclass(frozen=True, slots=True)
class RunOptions:
    config: Path
    kubeconfig: Path | None = None
    """Overrides `[runners.kubernetes]` for every entry (as `exec --kubeconfig`)."""
    context: str | None = None
    jobs_dir: Path | None = None
    """Where running jobs keep their records; None: `kuberunner-jobs` next to config.toml."""
    log_level_flag: str | None = None
    log_format_flag: str | None = None
    """`--log-level`/`--log-format` as given; they win over config.toml's keys (GitLab Runner's rule)."""


class _Slots:
    """A counting limit that can be waited on together with the stop event."""

    def __init__(self, size: int | None) -> None:
        self._size = size
        self._used = 0
        self._changed = asyncio.Condition()
        self.peak = 0

    async def acquire(self, stopping: asyncio.Event) -> bool:
        async with self._changed:
            while self._size is not None and self._used >= self._size:
                if stopping.is_set():
                    return False
                waiter = asyncio.ensure_future(self._changed.wait())
                stop = asyncio.ensure_future(stopping.wait())
                try:
                    await asyncio.wait([waiter, stop], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    if not waiter.done():
                        waiter.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await waiter
            if stopping.is_set():
                return False
            self._used += 1
            self.peak = max(self.peak, self._used)
            return True

    def take(self) -> None:
        """Hold a slot even past the limit (a job taken over must run, whatever the limit)."""
        self._used += 1
        self.peak = max(self.peak, self._used)

    async def release(self) -> None:
        async with self._changed:
            self._used -= 1
            self._changed.notify_all()


class Runner:
    """The whole `run` process: its slots, its job tasks, its stop events."""

    def __init__(self, *, concurrent: int, check_interval: float) -> None:
        self.slots = _Slots(concurrent)
        self.check_interval = check_interval
        self.stopping = asyncio.Event()
        self.jobs: set[asyncio.Task[Any]] = set()
        self.workers: set[asyncio.Task[Any]] = set()
        self.worker_count = 0
        self.failed_workers = 0
        self.status = 0
        """FAILED when every runner entry stopped for good (an untrusted certificate)."""

    def on_signal(self, signum: int) -> None:
        if not self.stopping.is_set():
            log.warning(
                "%s: taking no new jobs; waiting for %d running job(s) (again to stop them now)",
                signal.Signals(signum).name,
                len(self.jobs),
            )
            self.stopping.set()
            for worker in list(self.workers):
                worker.cancel()
            return
        log.warning("%s: stopping the running jobs now", signal.Signals(signum).name)
        for job in list(self.jobs):
            job.cancel()

    def health(self) -> dict[str, Any]:
        """`/health`: answered at all means the loop runs; `stopping` while draining after a signal."""
        return {"status": "stopping" if self.stopping.is_set() else "ok", "running_jobs": len(self.jobs)}

    async def serve(self, env: JobEnv, poll: PollSettings, system: str) -> None:
        """Request workers for one entry; returns when stopping."""
        own = _Slots(poll.limit or None)
        last_update: list[str | None] = [None]
        self.worker_count += poll.request_concurrency
        for index in range(poll.request_concurrency):
            name = f"runner {env.runner.name or env.api.base}: requests {index}"
            tasks.start(self._worker(env, own, system, last_update), name=name, tasks=self.workers)

    async def _worker(self, env: JobEnv, own: _Slots, system: str, last_update: list[str | None]) -> None:
        token = env.runner.token
        logs.bind(runner=short_token(token))
        while not self.stopping.is_set():
            if not await self.slots.acquire(self.stopping):
                return
            if not await own.acquire(self.stopping):
                await self.slots.release()
                return
            started = False
            try:
                offer = await env.api.request_job(token=token, system_id=system, last_update=last_update[0])
                last_update[0] = offer.last_update
                if offer.job is not None:
                    tasks.start(
                        self._job(env, own, offer.job), name=f"job {_job_id(offer.job)}", tasks=self.jobs
                    )
                    started = True
                elif offer.broken is not None:
                    tasks.start(
                        self._broken(env, own, offer.broken),
                        name=f"job {offer.broken.id or '?'}",
                        tasks=self.jobs,
                    )
                    started = True
            except Untrusted as exc:
                # A certificate problem does not heal by retrying: say so once, and stop this entry.
                log.error("runner %s: %s; this runner takes no more jobs", env.runner.name or token[:8], exc)
                self._entry_failed()
                return
            except GitLabError as exc:
                log.error("runner %s: %s", env.runner.name or token[:8], exc)
            finally:
                if not started:
                    await own.release()
                    await self.slots.release()
            if not started:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=self.check_interval)

    def _entry_failed(self) -> None:
        self.failed_workers += 1
        if self.failed_workers == self.worker_count:
            self.status = FAILED
            self.stopping.set()

    async def _broken(self, env: JobEnv, own: _Slots, broken: BrokenJob) -> None:
        try:
            await fail_broken_job(env, broken)
        finally:
            await own.release()
            await self.slots.release()

    async def _job(self, env: JobEnv, own: _Slots, raw: Any) -> None:
        try:
            await handle_job(env, raw)
        finally:
            await own.release()
            await self.slots.release()

    def adopted(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run a job taken over at start; it holds a slot of `concurrent` like any other."""
        self.slots.take()

        async def job() -> None:
            try:
                await work
            finally:
                await self.slots.release()

        tasks.start(job(), name=name, tasks=self.jobs)

    async def wait_for_jobs(self) -> None:
        await self.stopping.wait()
        while self.jobs:
            await asyncio.wait(set(self.jobs))


def _journal(options: RunOptions) -> Journal:
    journal = Journal(options.jobs_dir or options.config.parent / DIRECTORY_NAME)
    try:
        journal.prepare()
    except OSError as exc:
        raise BadInput(f"job records directory {journal.directory}: {_reason(exc)}") from exc
    return journal


def _reason(exc: Exception) -> str:
    return str(exc.strerror) if isinstance(exc, OSError) and exc.strerror else str(exc)


def _job_id(raw: Any) -> str:
    return str(raw.get("id", "?")) if isinstance(raw, dict) else "?"


@contextlib.asynccontextmanager
async def _environment(
    options: RunOptions,
    runner: RunnerEntry,
    *,
    system: str,
    journal: Journal,
    observer: EntryWatch = NO_WATCH,
) -> AsyncIterator[JobEnv]:
    try:
        api = GitLabClient(
            runner.url,
            timeouts=Timeouts(call=runner.gitlab_call_timeout),
            tls_ca_file=runner.tls_ca_file,
            on_answer=observer.api_answered,
        )
    except ValueError as exc:
        raise BadInput(f"runner {runner.name!r}: url {exc}") from exc
    except (OSError, ssl.SSLError) as exc:
        raise BadInput(f"runner {runner.name!r}: tls-ca-file {runner.tls_ca_file}: {_reason(exc)}") from exc
    exec_options = ExecOptions(
        file=Path(".gitlab-ci.yml"), kubeconfig=options.kubeconfig, context=options.context
    )
    clusters = cluster_for(exec_options, runner, embedded_by_default=False)
    async with clusters as cfg, await KubeClient.open(cfg) as client, api, local_cache(runner) as cache:
        owner = owner_label(system, journal.directory)
        settings = dataclasses.replace(
            executor_settings(runner, runner.kubernetes.namespace), owner=owner, observer=observer
        )
        yield JobEnv(
            api=api,
            runner=runner,
            client=client,
            settings=settings,
            journal=journal,
            local_cache=cache,
            observer=observer,
        )


@contextlib.asynccontextmanager
async def local_cache(runner: RunnerEntry) -> AsyncIterator[ObjectServer | None]:
    """The `local` cache's server: asked for, or the default with the embedded cluster (its pods
    share this machine's network, so they reach the server on loopback)."""
    kind = runner.cache.type or ("local" if runner.kubernetes.host == EMBEDDED_HOST else "")
    if kind != "local":
        yield None
        return
    directory = runner.cache.directory or "~/.cache/kuberunner/cache"
    server = ObjectServer(directory, host=runner.cache.listen_address)
    try:
        await server.start()
    except OSError as exc:
        raise BadInput(f"runner {runner.name!r}: the local cache in {directory}: {_reason(exc)}") from exc
    try:
        yield server
    finally:
        await server.close()


async def run_runners(options: RunOptions) -> int:
    """Serve until stopped by a signal; 0 after a clean stop, FAILED when no runner can go on."""
    settings = load_run_settings(options.config)
    config = settings.config
    scrubber = logs.adjust(
        level=None if options.log_level_flag else config.log_level,
        fmt=None if options.log_format_flag else config.log_format,
    )
    scrubber.hold(_secrets(config.runners))
    pairs = [(entry, poll) for entry, poll in settings.pairs() if entry.executor == "kubernetes"]
    if not pairs:
        raise BadInput(f'{options.config}: no [[runners]] entry with executor "kubernetes"')
    address = _listen_address(options.config, config.listen_address)
    system = system_id.load_or_create(options.config)
    runner = Runner(concurrent=config.concurrent, check_interval=settings.check_interval)
    metrics = RunnerMetrics(concurrent=config.concurrent, system_id=system, scrubber=scrubber)
    errors = metrics.error_counter()
    logging.getLogger().addHandler(errors)
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, runner.on_signal, signum)
    try:
        async with contextlib.AsyncExitStack() as stack:
            journal = _journal(options)
            if address is not None:
                await _serve_metrics(stack, options.config, address, metrics, runner)
            envs: list[tuple[JobEnv, PollSettings]] = []
            for entry, poll in pairs:
                try:
                    observer = metrics.entry(entry, limit=poll.limit)
                    context = _environment(options, entry, system=system, journal=journal, observer=observer)
                    envs.append((await stack.enter_async_context(context), poll))
                except KubeConfigError as exc:
                    raise BadInput(f"runner {entry.name!r}: {exc}") from exc
            # Before any new job: take over what a previous process left running, remove its orphans.
            await sweep_orphans(journal, [env for env, _ in envs], owner_label(system, journal.directory))
            adopt_recorded(journal, [env for env, _ in envs], runner.adopted)
            for env, poll in envs:
                await runner.serve(env, poll, system)
            log.warning("running %d runner(s), concurrent = %d", len(pairs), settings.config.concurrent)
            await runner.wait_for_jobs()
            await tasks.stop_all(runner.workers, within=10)
        return runner.status
    finally:
        logging.getLogger().removeHandler(errors)
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def _secrets(entries: tuple[RunnerEntry, ...]) -> list[str]:
    """What config.toml holds that no log line may show."""
    found: list[str] = []
    for entry in entries:
        found += [entry.token, entry.kubernetes.bearer_token or "", entry.cache.s3.secret_key]
    return [value for value in found if value]


def _listen_address(config: Path, text: str | None) -> ListenAddress | None:
    if text is None:
        return None
    try:
        return parse_listen_address(text)
    except ValueError as exc:
        raise ConfigFileError(config, 0, str(exc), key="listen_address") from exc


async def _serve_metrics(
    stack: contextlib.AsyncExitStack,
    config: Path,
    address: ListenAddress,
    metrics: RunnerMetrics,
    runner: Runner,
) -> None:
    server = MetricsServer(metrics.registry, runner.health)
    try:
        bound = await server.start(address)
    except OSError as exc:
        # asyncio's text wraps the system's ("error while attempting to bind ..."): say the system's.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigFileError(
            config, 0, f"cannot listen on {address}: {reason}", key="listen_address"
        ) from exc
    stack.push_async_callback(server.close)
    log.warning("listening on %s for /metrics and /health", bound)
