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
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from kuberunner import __version__
from kuberunner.config import RunnerEntry
from kuberunner.executor import results
from kuberunner.executor.job import run_job
from kuberunner.executor.object_server import ObjectServer
from kuberunner.executor.results import decide
from kuberunner.executor.resume import (
    after_stages,
    delete_pod,
    needs_pod,
    pod_problem,
    resume_job,
    stages_between,
)
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.gitlab.client import BrokenJob, GitLabClient, GitLabError, TraceReply, UpdateReply
from kuberunner.gitlab.payload import JobPayload, PayloadError, parse_job
from kuberunner.gitlab.trace_upload import Chunk, TraceBuffer, TraceUploader
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeError
from kuberunner.runner import tasks
from kuberunner.runner.journal import Claim, JobRecord, Journal, Recorder, runner_key
from kuberunner.runner.metrics import NO_WATCH, EntryWatch
from kuberunner.runner.translate import Translated, Untranslatable, translate
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
    journal: Journal | None = None
    """Where running jobs keep their records (`journal`); None: no records, nothing to take over."""
    local_cache: ObjectServer | None = None
    """The `local` cache's server ([runners.cache]), when this runner keeps its cache on this machine."""
    observer: EntryWatch = NO_WATCH
    """Hears how jobs go, for `run`'s metrics and log fields (`metrics`)."""


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
        await _fail_unreadable(env, raw, f"the job payload is not valid: {exc}")
        return
    job = _GitLabJob(env, payload)
    try:
        await job.run()
    finally:
        job.watch.close()


async def fail_broken_job(env: JobEnv, broken: BrokenJob) -> None:
    """A payload GitLab dequeued but we cannot read: tell GitLab it failed, when we know which job."""
    log.error("%s; the job fails as a system failure", broken.reason)
    await _fail_unreadable(env, {"id": broken.id, "token": broken.token}, broken.reason)


async def _fail_unreadable(env: JobEnv, raw: Any, reason: str) -> None:
    job_id = raw.get("id") if isinstance(raw, dict) else None
    token = raw.get("token") if isinstance(raw, dict) else None
    if not isinstance(job_id, int) or isinstance(job_id, bool) or not isinstance(token, str) or not token:
        log.error("the job payload has no usable id and token; GitLab cannot be told")
        return
    job = _GitLabJob(env, None, job_id=job_id, token=token)
    try:
        await job.fail_before_start(reason)
    finally:
        job.watch.close()


class _GitLabJob:
    def __init__(
        self,
        env: JobEnv,
        payload: JobPayload | None,
        *,
        job_id: int = 0,
        token: str = "",
        adopted: bool = False,
    ) -> None:
        self.env = env
        self.payload = payload
        self.id = payload.id if payload is not None else job_id
        self.token = payload.token if payload is not None else token
        self.watch = env.observer.job(self.id, self.token, adopted=adopted)
        if payload is not None:
            # Before anything about the job is logged (its name, a translation error).
            self.watch.mask(v.value.strip() for v in payload.variables if v.masked)
        self.cancel = asyncio.Event()
        self.abort = asyncio.Event()
        self.uploader = TraceUploader(
            client=env.api,
            job_id=self.id,
            job_token=self.token,
            buffer=TraceBuffer(max_bytes=env.runner.kubernetes.output_limit * 1024 + (1 << 20)),
            on_reply=self._on_trace_reply,
            interval=env.trace_interval,
            on_accepted=self._on_accepted,
            on_sending=self._on_sending,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self.recorder: Recorder | None = None

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

    def _on_accepted(self, sent: int) -> None:
        self.watch.trace_accepted(sent)
        if self.recorder is not None:
            self.recorder.acknowledged(sent)

    def _on_sending(self, chunk: Chunk) -> None:
        if self.recorder is not None:
            self.recorder.sending(chunk)

    def _start_recording(self, translated: Translated, trace: Trace) -> None:
        """Keep a record a restarted runner takes the job over from (or, if it cannot, ends it)."""
        journal, request = self.env.journal, translated.request
        if journal is None or self.payload is None:
            return
        try:
            claim = journal.claim(self.id)
        except OSError as exc:
            log.warning("job %d: no record can be kept: %s", self.id, exc)
            return
        if claim is None:
            return
        settings = self.env.settings
        record = JobRecord(
            job_id=self.id,
            job_token=self.token,
            url=self.env.runner.url,
            runner=runner_key(self.env.runner.token),
            namespace=settings.namespace,
            pod="",
            transport=settings.log_transport,
            git_sources=request.git is not None,
            deadline=time.time() + request.timeout,
            timeout=request.timeout,
            masked=translated.masked,
            output_limit=self.env.runner.kubernetes.output_limit * 1024,
            failure_reasons=self.payload.failure_reasons,
            after_script=bool(request.job.after_script),
            after_script_when=request.after_script_when,
            after_script_timeout=request.after_script_timeout,
            before_script=stages_between(
                waits_for_services=any(s.ports for s in request.services), transfers=request.transfers
            ),
            after_stages=tuple(sorted(after_stages(request.transfers, project_dir=request.project_dir))),
            strategy="legacy_exec" if request.legacy_exec else "attach",
        )
        self.recorder = Recorder(journal, record, claim, trace, self.uploader.buffer)

    def _stop_recording(self) -> None:
        if self.recorder is not None:
            self.recorder.finish()

    async def adopt(self, journal: Journal, record: JobRecord, claim: Claim) -> None:
        log.warning("job %d: taking it over from pod %s/%s", self.id, record.namespace, record.pod)
        await self._ask_status()
        if self.abort.is_set():
            log.warning("job %d: GitLab no longer runs it; deleting pod %s", self.id, record.pod)
            await _delete_quietly(self.env, record)
            return
        await self._settle(record)
        resume = record.resume_from()
        problem = _why_not_resumable(record) if resume is None else None
        if resume is not None and needs_pod(resume):
            with contextlib.suppress(KubeError):  # the resumed flow meets it again and says so
                problem = await pod_problem(self.env.client, record.namespace, record.pod)
        point = record.checkpoint if problem is None else None
        final = record.final
        if final is not None:
            # Every stage ran before the restart: send what GitLab lacks, then the final update.
            buffer = TraceBuffer(
                max_bytes=record.output_limit + (1 << 20), origin=final.start, crc=final.start_crc
            )
            buffer.append(final.tail)
            line_start, job_bytes = final.line_start, final.job_bytes
        elif point is not None:
            # Go on from the checkpoint: the bytes made again up to GitLab's size are skipped.
            buffer = TraceBuffer(
                max_bytes=record.output_limit + (1 << 20), origin=point.trace_bytes, crc=point.trace_crc
            )
            line_start, job_bytes = point.line_start, point.job_bytes
        else:
            # Nothing will be made again: go on from what GitLab acknowledged.
            buffer = TraceBuffer(
                max_bytes=record.output_limit + (1 << 20),
                origin=record.acknowledged,
                crc=record.acknowledged_crc,
            )
            buffer.append(record.unsent)
            line_start = record.unsent.endswith(b"\n") if record.unsent else record.acknowledged_line_start
            job_bytes = 0
        self.uploader.continue_trace(buffer)
        trace = Trace(
            color=True,
            masked=record.masked or (self.token,),
            output_limit=record.output_limit,
            at_line_start=line_start,
            job_bytes=job_bytes,
        )
        trace.add_sink(self.uploader.sink())
        self.recorder = Recorder(journal, record, claim, trace, buffer)
        tasks.start(self.uploader.run(), name=f"job {self.id}: trace upload", tasks=self._tasks)
        tasks.start(self._keep_alive(), name=f"job {self.id}: keep-alive", tasks=self._tasks)
        result: results.JobResult | None
        try:
            if final is not None:
                await _delete_quietly(self.env, record)
                result = decide(final.outcome)
            elif resume is None or problem is not None:
                await _delete_quietly(self.env, record)
                result = results.SystemFailure(problem or _why_not_resumable(record))
            else:
                result = await self._supervise(
                    resume_job(
                        resume=resume,
                        client=self.env.client,
                        settings=self.env.settings,
                        trace=trace,
                        cancel=self.cancel,
                        progress=self.watch.progress(self.recorder.progress),
                    )
                )
        except asyncio.CancelledError:
            await self._stopped(trace, record.failure_reasons)
            raise
        await self._conclude(trace, result, record.failure_reasons)

    async def _settle(self, record: JobRecord) -> None:
        """Make sure GitLab holds the chunk the previous process was sending when it died (it may
        have arrived unheard of): after this, GitLab's size is known and so is the checkpoint."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + ADOPT_STATUS_WITHIN
        delay = 0.5
        start, data = record.acknowledged, record.unsent
        while data and loop.time() < give_up:
            try:
                reply = await self.env.api.patch_trace(
                    job_id=self.id, job_token=self.token, start=start, data=data
                )
            except GitLabError as exc:
                log.info("job %d: re-sending the trace: %s", self.id, exc)
            else:
                if reply.status == 202 or (reply.status == 416 and reply.range_end == start + len(data)):
                    record.settled()
                    return
                if reply.status != 416 or reply.range_end != start:
                    return  # GitLab stands elsewhere: the trace's own re-sync deals with it
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _ask_status(self) -> None:
        """A `running` update: GitLab's answer says whether the job is still ours and not canceled."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + ADOPT_STATUS_WITHIN
        delay = 0.5
        while True:
            try:
                reply = await self.env.api.update_job(job_id=self.id, job_token=self.token, state="running")
            except GitLabError as exc:
                if loop.time() + delay > give_up:
                    log.warning("job %d: %s; going on without GitLab's word", self.id, exc)
                    return
                log.info("job %d: asking GitLab about it: %s", self.id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if reply.status == 404:
                self.abort.set()
            self._on_update_reply(reply)
            return

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
            translated = translate(
                payload,
                runner=self.env.runner,
                default_timeout=self.env.settings.default_timeout,
                local_cache=self.env.local_cache,
            )
        except Untranslatable as exc:
            log.error("job %d: %s; the job fails as a system failure", self.id, exc)
            await self.fail_before_start(str(exc))
            return
        trace = self._trace(translated.masked)
        self._start_recording(translated, trace)
        try:
            await self._run_translated(payload, translated, trace)
        finally:
            self._stop_recording()

    async def _run_translated(self, payload: JobPayload, translated: Translated, trace: Trace) -> None:
        tasks.start(self.uploader.run(), name=f"job {self.id}: trace upload", tasks=self._tasks)
        tasks.start(self._keep_alive(), name=f"job {self.id}: keep-alive", tasks=self._tasks)
        result: results.JobResult | None = None
        try:
            trace.runner_line(f"Running with kuberunner {__version__}")
            for warning in translated.warnings:
                trace.runner_line(f"WARNING: {warning}", level="warning")
            result = await self._execute(translated.request, trace)
        except asyncio.CancelledError:
            await self._stopped(trace, payload.failure_reasons)
            raise
        await self._conclude(trace, result, payload.failure_reasons)

    async def _stopped(self, trace: Trace, accepted: tuple[str, ...]) -> None:
        """The runner is stopping at once: the pod is gone; tell GitLab briefly, then stop."""
        stopped = results.SystemFailure("the runner was stopped")
        trace.runner_line(results.summary_line(stopped), level="error")
        await self._wrap_up(trace)
        finishing = asyncio.ensure_future(self._finish(final_for(stopped, accepted)))
        await asyncio.wait([finishing], timeout=STOP_REPORT_TIMEOUT)
        finishing.cancel()

    async def _conclude(
        self, trace: Trace, result: results.JobResult | None, accepted: tuple[str, ...]
    ) -> None:
        if result is not None:
            success = isinstance(result, results.Success)
            trace.runner_line(results.summary_line(result), level="success" if success else "error")
        await self._wrap_up(trace)
        if result is None:
            log.warning("job %d: aborted; no final update", self.id)
            await self.uploader.flush(attempts=1)
            return
        log.info("job %d: %s", self.id, results.summary_line(result))
        await self._finish(final_for(result, accepted))

    async def _wrap_up(self, trace: Trace) -> None:
        trace.close()
        self.uploader.stop()
        await tasks.stop_all(self._tasks, within=10)

    async def _execute(self, request: Any, trace: Trace) -> results.JobResult | None:
        """The result, or None when GitLab aborted the job (pod deleted, no after_script)."""
        return await self._supervise(
            run_job(
                request=request,
                client=self.env.client,
                settings=self.env.settings,
                trace=trace,
                cancel=self.cancel,
                progress=self.watch.progress(self.recorder.progress if self.recorder is not None else None),
            )
        )

    async def _supervise(self, work: Coroutine[Any, Any, results.JobResult]) -> results.JobResult | None:
        """Run the executor's `work`, stopped when GitLab aborts the job (then None)."""
        job = asyncio.ensure_future(work)
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
                        job_id=self.id,
                        job_token=self.token,
                        state="running",
                        checksum=self.uploader.buffer.checksum,
                        bytesize=self.uploader.buffer.size,
                    )
                except GitLabError as exc:
                    log.warning("job %d: keep-alive: %s", self.id, exc)
                else:
                    self._on_update_reply(reply)
                self.uploader.last_success = loop.time()
            await asyncio.sleep(max(1.0, KEEP_ALIVE_AFTER - idle))

    async def _finish(self, final: Final) -> None:
        """Flush the trace, then PUT the final state until GitLab takes it (200) or refuses (403/404),
        for at most `final_update_timeout` seconds in all."""
        self.watch.finished(final.state, final.failure_reason)
        limit = self.env.runner.final_update_timeout
        try:
            async with asyncio.timeout(limit):
                await self._send_final(final)
        except TimeoutError:
            log.error("job %d: GitLab did not take the final update within %g s; giving up", self.id, limit)

    async def _send_final(self, final: Final) -> None:
        delay = 1.0
        for _ in range(FINAL_UPDATE_ATTEMPTS):
            await self.uploader.flush()
            buffer = self.uploader.buffer
            try:
                reply = await self.env.api.update_job(
                    job_id=self.id,
                    job_token=self.token,
                    state=final.state,
                    failure_reason=final.failure_reason,
                    exit_code=final.exit_code,
                    checksum=buffer.checksum,
                    bytesize=buffer.size,
                )
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


ADOPT_STATUS_WITHIN = 60.0
"""Seconds a restarted runner keeps asking GitLab where an adopted job stands before going on anyway."""


async def adopt_job(env: JobEnv, journal: Journal, record: JobRecord, claim: Claim) -> None:
    """Carry on a job a previous runner process started (see `journal`); never raises for anything
    the job, the cluster or GitLab did."""
    job = _GitLabJob(env, None, job_id=record.job_id, token=record.job_token, adopted=True)
    try:
        await job.adopt(journal, record, claim)
    finally:
        job._stop_recording()
        claim.release()
        job.watch.close()


def _why_not_resumable(record: JobRecord) -> str:
    if not record.resumable:
        return "a restarted runner of an older version cannot take over this job"
    if record.strategy != "attach":
        return f"a restarted runner cannot take over a job run by the {record.strategy} strategy"
    return "the runner restarted before the job's first stage started"


async def _delete_quietly(env: JobEnv, record: JobRecord) -> None:
    if not record.pod:
        return
    try:
        await delete_pod(env.client, record.namespace, record.pod)
    except KubeError as exc:
        log.warning("job %d: could not delete pod %s: %s", record.job_id, record.pod, exc)
