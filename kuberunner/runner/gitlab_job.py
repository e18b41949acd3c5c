"""One job from GitLab, from the acknowledging PUT to the final update.

The executor runs the job; this module wires it to GitLab: the trace goes to a background
uploader, GitLab's replies decide cancellation (`Job-Status: canceling` stops the stage and runs
after_script; `canceled`, `failed` or any 403 aborts at once), a keep-alive PUT goes out when the
trace has been idle, and the result becomes a final PUT with GitLab's failure reasons and the
trace's checksum. A job that cannot even be read or translated still gets a final update as a
system failure, so GitLab never waits for a job the runner dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from kuberunner import __version__
from kuberunner.config import RunnerEntry
from kuberunner.executor import results
from kuberunner.executor.job import run_job
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.gitlab.client import GitLabClient, GitLabError, TraceReply, UpdateReply
from kuberunner.gitlab.payload import JobPayload, PayloadError, parse_job
from kuberunner.gitlab.trace_upload import TraceBuffer, TraceUploader
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeError
from kuberunner.runner import tasks
from kuberunner.runner.translate import Untranslatable, translate
from kuberunner.trace import Trace

log = logging.getLogger("kuberunner.runner")

KEEP_ALIVE_AFTER = 30.0
"""Seconds without an accepted PATCH before a keep-alive PUT (GitLab Runner's minimum)."""
FINAL_UPDATE_ATTEMPTS = 10
STOP_REPORT_TIMEOUT = 10.0
"""Seconds a job stopped by a runner shutdown may spend telling GitLab so."""
ALWAYS_ACCEPTED = ("script_failure", "runner_system_failure", "job_execution_timeout")


@dataclass(frozen=True, slots=True)
class JobEnv:
    """What every job of one `[[runners]]` entry shares."""

    api: GitLabClient
    runner: RunnerEntry
    client: KubeClient
    settings: ExecutorSettings
    trace_interval: float = 3.0


@dataclass(frozen=True, slots=True)
class Final:
    state: str
    failure_reason: str | None = None
    exit_code: int | None = None


def final_for(result: results.JobResult, accepted: tuple[str, ...]) -> Final:
    """The final PUT for a result; reasons the server does not list become `unknown_failure`."""

    def reason(name: str) -> str:
        return name if name in ALWAYS_ACCEPTED or name in accepted else "unknown_failure"

    match result:
        case results.Success():
            return Final("success")
        case results.ScriptFailure(exit_code=code):
            return Final("failed", "script_failure", code)
        case results.SystemFailure():
            return Final("failed", "runner_system_failure")
        case results.TimedOut():
            return Final("failed", "job_execution_timeout")
        case results.Canceled():
            return Final("failed", reason("job_canceled"))


async def handle_job(env: JobEnv, raw: Any) -> None:
    """Run the job GitLab handed out; never raises for anything the job or GitLab did."""
    try:
        payload = parse_job(raw)
    except PayloadError as exc:
        log.error("%s; the job fails as a system failure", exc)
        await _fail_unreadable(env, raw, str(exc))
        return
    await _GitLabJob(env, payload).run()


async def _fail_unreadable(env: JobEnv, raw: Any, reason: str) -> None:
    job_id = raw.get("id") if isinstance(raw, dict) else None
    token = raw.get("token") if isinstance(raw, dict) else None
    if not isinstance(job_id, int) or isinstance(job_id, bool) or not isinstance(token, str) or not token:
        log.error("the job payload has no usable id and token; GitLab cannot be told")
        return
    job = _GitLabJob(env, None, job_id=job_id, token=token)
    await job.fail_before_start(f"the job payload is not valid: {reason}")


class _GitLabJob:
    def __init__(self, env: JobEnv, payload: JobPayload | None, *, job_id: int = 0, token: str = "") -> None:
        self.env = env
        self.payload = payload
        self.id = payload.id if payload is not None else job_id
        self.token = payload.token if payload is not None else token
        self.cancel = asyncio.Event()
        self.abort = asyncio.Event()
        self.uploader = TraceUploader(
            client=env.api, job_id=self.id, job_token=self.token,
            buffer=TraceBuffer(max_bytes=env.runner.kubernetes.output_limit * 1024 + (1 << 20)),
            on_reply=self._on_trace_reply, interval=env.trace_interval,
        )
        self._tasks: set[asyncio.Task[Any]] = set()

    def _on_status(self, http_status: int, job_status: str | None) -> None:
        if http_status == 403 or job_status in ("canceled", "failed"):
            if not self.abort.is_set():
                log.warning("job %d: GitLab says %s; aborting", self.id, job_status or http_status)
            self.abort.set()
        elif job_status == "canceling" and not self.cancel.is_set():
            log.info("job %d: canceling", self.id)
            self.cancel.set()

    def _on_trace_reply(self, reply: TraceReply) -> None:
        self._on_status(reply.status, reply.job_status)

    def _on_update_reply(self, reply: UpdateReply) -> None:
        self._on_status(reply.status, reply.job_status)

    def _trace(self, masked: tuple[str, ...] = ()) -> Trace:
        limit = self.env.runner.kubernetes.output_limit * 1024
        trace = Trace(color=True, masked=masked or (self.token,), output_limit=limit)
        trace.add_sink(self.uploader.sink())
        return trace

    async def fail_before_start(self, reason: str) -> None:
        trace = self._trace()
        trace.runner_line(f"Running with kuberunner {__version__}")
        trace.runner_line(results.summary_line(results.SystemFailure(reason)), level="error")
        trace.close()
        await self._finish(Final("failed", "runner_system_failure"))

    async def run(self) -> None:
        assert self.payload is not None
        payload = self.payload
        log.info("job %d: received (%s)", self.id, payload.name)
        try:
            ack = await self.env.api.update_job(job_id=self.id, job_token=self.token, state="running")
        except GitLabError as exc:
            log.error("job %d: %s; dropping it", self.id, exc)
            return
        self._on_update_reply(ack)
        if self.abort.is_set():
            return
        try:
            translated = translate(payload, runner=self.env.runner,
                                   default_timeout=self.env.settings.default_timeout)
        except Untranslatable as exc:
            log.error("job %d: %s; the job fails as a system failure", self.id, exc)
            await self.fail_before_start(str(exc))
            return
        trace = self._trace(translated.masked)
        tasks.start(self.uploader.run(), name=f"job {self.id}: trace upload", tasks=self._tasks)
        tasks.start(self._keep_alive(), name=f"job {self.id}: keep-alive", tasks=self._tasks)
        result: results.JobResult | None = None
        try:
            trace.runner_line(f"Running with kuberunner {__version__}")
            for warning in translated.warnings:
                trace.runner_line(f"WARNING: {warning}", level="warning")
            result = await self._execute(translated.request, trace)
        except asyncio.CancelledError:
            # The runner is stopping at once: the pod is gone; tell GitLab briefly, then stop.
            stopped = results.SystemFailure("the runner was stopped")
            trace.runner_line(results.summary_line(stopped), level="error")
            await self._wrap_up(trace)
            finishing = asyncio.ensure_future(self._finish(final_for(stopped, payload.failure_reasons)))
            await asyncio.wait([finishing], timeout=STOP_REPORT_TIMEOUT)
            finishing.cancel()
            raise
        if result is not None:
            success = isinstance(result, results.Success)
            trace.runner_line(results.summary_line(result), level="success" if success else "error")
        await self._wrap_up(trace)
        if result is None:
            log.warning("job %d: aborted; no final update", self.id)
            await self.uploader.flush(attempts=1)
            return
        log.info("job %d: %s", self.id, results.summary_line(result))
        await self._finish(final_for(result, payload.failure_reasons))

    async def _wrap_up(self, trace: Trace) -> None:
        trace.close()
        self.uploader.stop()
        await tasks.stop_all(self._tasks, within=10)

    async def _execute(self, request: Any, trace: Trace) -> results.JobResult | None:
        """The result, or None when GitLab aborted the job (pod deleted, no after_script)."""
        job = asyncio.ensure_future(run_job(
            request=request, client=self.env.client, settings=self.env.settings, trace=trace,
            cancel=self.cancel))
        aborted = asyncio.ensure_future(self.abort.wait())
        try:
            await asyncio.wait([job, aborted], return_when=asyncio.FIRST_COMPLETED)
        finally:
            aborted.cancel()
            if not job.done():
                job.cancel()  # run_job deletes the pod on its way out
                with contextlib.suppress(asyncio.CancelledError, KubeError):
                    await job
        if job.cancelled():
            return None
        exc = job.exception()
        if isinstance(exc, KubeError):
            return results.SystemFailure(f"Kubernetes API: {exc}")
        if exc is not None:
            log.error("job %d: %s: %s", self.id, type(exc).__name__, exc, exc_info=exc)
            return results.SystemFailure(f"runner error: {type(exc).__name__}: {exc}")
        return job.result()

    async def _keep_alive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            idle = loop.time() - self.uploader.last_success
            if idle >= KEEP_ALIVE_AFTER:
                try:
                    reply = await self.env.api.update_job(
                        job_id=self.id, job_token=self.token, state="running",
                        checksum=self.uploader.buffer.checksum, bytesize=self.uploader.buffer.size)
                except GitLabError as exc:
                    log.warning("job %d: keep-alive: %s", self.id, exc)
                else:
                    self._on_update_reply(reply)
                self.uploader.last_success = loop.time()
            await asyncio.sleep(max(1.0, KEEP_ALIVE_AFTER - idle))

    async def _finish(self, final: Final) -> None:
        """Flush the trace, then PUT the final state until GitLab takes it (200) or refuses (403/404)."""
        delay = 1.0
        for _ in range(FINAL_UPDATE_ATTEMPTS):
            await self.uploader.flush()
            buffer = self.uploader.buffer
            try:
                reply = await self.env.api.update_job(
                    job_id=self.id, job_token=self.token, state=final.state,
                    failure_reason=final.failure_reason, exit_code=final.exit_code,
                    checksum=buffer.checksum, bytesize=buffer.size)
            except GitLabError as exc:
                log.warning("job %d: final update: %s", self.id, exc)
            else:
                if reply.status == 200 or reply.status in (403, 404):
                    return
                if reply.status == 202:
                    await asyncio.sleep(reply.update_interval or 1.0)
                    continue
                log.warning("job %d: final update: GitLab answered %d", self.id, reply.status)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
        log.error("job %d: GitLab never took the final update", self.id)
