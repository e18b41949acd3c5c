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
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kuberunner.config import RunnerEntry
from kuberunner.errors import BadInput
from kuberunner.gitlab.client import GitLabClient, GitLabError
from kuberunner.kube.client import KubeClient
from kuberunner.local import ExecOptions, cluster_for, executor_settings
from kuberunner.runner import system_id, tasks
from kuberunner.runner.gitlab_job import JobEnv, handle_job
from kuberunner.runner.settings import PollSettings, load_run_settings

log = logging.getLogger("kuberunner.runner")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT)


@dataclass(frozen=True, slots=True)
class RunOptions:
    config: Path
    kubeconfig: Path | None = None
    """Overrides `[runners.kubernetes]` for every entry (as `exec --kubeconfig`)."""
    context: str | None = None


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

    def on_signal(self, signum: int) -> None:
        if not self.stopping.is_set():
            log.warning("%s: taking no new jobs; waiting for %d running job(s) (again to stop them now)",
                        signal.Signals(signum).name, len(self.jobs))
            self.stopping.set()
            for worker in list(self.workers):
                worker.cancel()
            return
        log.warning("%s: stopping the running jobs now", signal.Signals(signum).name)
        for job in list(self.jobs):
            job.cancel()

    async def serve(self, env: JobEnv, poll: PollSettings, system: str) -> None:
        """Request workers for one entry; returns when stopping."""
        own = _Slots(poll.limit or None)
        last_update: list[str | None] = [None]
        for index in range(poll.request_concurrency):
            name = f"runner {env.runner.name or env.api.base}: requests {index}"
            tasks.start(self._worker(env, own, system, last_update), name=name, tasks=self.workers)

    async def _worker(self, env: JobEnv, own: _Slots, system: str, last_update: list[str | None]) -> None:
        token = env.runner.token
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
                    tasks.start(self._job(env, own, offer.job), name=f"job {_job_id(offer.job)}",
                                tasks=self.jobs)
                    started = True
            except GitLabError as exc:
                log.error("runner %s: %s", env.runner.name or token[:8], exc)
            finally:
                if not started:
                    await own.release()
                    await self.slots.release()
            if not started:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=self.check_interval)

    async def _job(self, env: JobEnv, own: _Slots, raw: Any) -> None:
        try:
            await handle_job(env, raw)
        finally:
            await own.release()
            await self.slots.release()

    async def wait_for_jobs(self) -> None:
        await self.stopping.wait()
        while self.jobs:
            await asyncio.wait(set(self.jobs))


def _job_id(raw: Any) -> str:
    return str(raw.get("id", "?")) if isinstance(raw, dict) else "?"


@contextlib.asynccontextmanager
async def _environment(options: RunOptions, runner: RunnerEntry) -> AsyncIterator[JobEnv]:
    try:
        api = GitLabClient(runner.url)
    except ValueError as exc:
        raise BadInput(f"runner {runner.name!r}: url {exc}") from exc
    exec_options = ExecOptions(file=Path(".gitlab-ci.yml"), kubeconfig=options.kubeconfig,
                               context=options.context)
    async with cluster_for(exec_options, runner) as cfg, await KubeClient.open(cfg) as client, api:
        settings = executor_settings(runner, runner.kubernetes.namespace)
        yield JobEnv(api=api, runner=runner, client=client, settings=settings)


async def run_runners(options: RunOptions) -> int:
    """Serve until stopped by a signal; 0 after a clean stop."""
    settings = load_run_settings(options.config)
    pairs = [(entry, poll) for entry, poll in settings.pairs() if entry.executor == "kubernetes"]
    if not pairs:
        raise BadInput(f"{options.config}: no [[runners]] entry with executor \"kubernetes\"")
    system = system_id.load_or_create(options.config)
    runner = Runner(concurrent=settings.config.concurrent, check_interval=settings.check_interval)
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, runner.on_signal, signum)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for entry, poll in pairs:
                env = await stack.enter_async_context(_environment(options, entry))
                await runner.serve(env, poll, system)
            log.warning("running %d runner(s), concurrent = %d", len(pairs), settings.config.concurrent)
            await runner.wait_for_jobs()
            await tasks.stop_all(runner.workers, within=10)
        return 0
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
