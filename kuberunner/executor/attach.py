"""The attach strategy: one command line per stage into PID 1's stdin, output from the log file.

The stage's exit code comes only from its marker, whose nonce the job cannot read; the output is
read through the `file` transport from a byte offset that survives reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from kuberunner.executor import podhealth, retrying
from kuberunner.executor.backoff import Backoff
from kuberunner.executor.file_transport import FileLogReader, TransportError
from kuberunner.executor.kubelet_transport import KubeletLogReader
from kuberunner.executor.strategy import Exited, JobContext, Lost, StageEnd, Stopped
from kuberunner.executor.waiting import first_of
from kuberunner.kube import streams
from kuberunner.kube.errors import Forbidden, KubeError
from kuberunner.shell import commands
from kuberunner.shell.markers import JobOutput, MarkerScanner, StageExited

log = logging.getLogger(__name__)


class AttachStrategy:
    name = "attach"

    def __init__(self) -> None:
        self._scanner = MarkerScanner()
        self._exits: dict[str, asyncio.Future[int]] = {}
        self._pump: asyncio.Task[None] | None = None

    async def open(self, job: JobContext) -> None:
        if job.settings.log_transport == "file":
            await _check_exec_allowed(job)
        self._pump = asyncio.create_task(self._pump_output(job), name=f"{job.state.pod}: output")

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    async def run_stage(self, job: JobContext, stage: str, *, deadline: float) -> StageEnd:
        loop = asyncio.get_running_loop()
        nonce, token = secrets.token_hex(16), secrets.token_hex(8)
        exited: asyncio.Future[int] = loop.create_future()
        self._exits[stage] = exited
        job.state.stage, job.state.nonce = stage, nonce
        self._scanner.expect(stage=stage, nonce=nonce)
        paths = job.settings.paths
        to_log_file = job.settings.log_transport == "file"
        line = commands.start_stage(
            paths=paths, stage=stage, nonce=nonce, token=token, to_log_file=to_log_file
        )
        await _write_stdin(job, line)
        done = await first_of([exited, job.broken, job.cancel.wait()], within=deadline - loop.time())
        if exited in done:
            return Exited(exited.result())
        if job.broken in done:
            return Lost(job.broken.result())
        await _write_stdin(job, commands.kill_stage(paths=paths, token=token))
        await first_of([exited, job.broken], within=job.settings.kill_grace)
        return Stopped(canceled=job.cancel.is_set())

    async def _pump_output(self, job: JobContext) -> None:
        reader = _reader(job)
        try:
            async for chunk in reader.chunks():
                if isinstance(reader, FileLogReader):
                    job.state.offset = reader.offset
                self._dispatch(job, self._scanner.feed(chunk))
        except TransportError as exc:
            job.mark_broken(str(exc))
        finally:
            self._dispatch(job, self._scanner.flush())

    def _dispatch(self, job: JobContext, events: list[JobOutput | StageExited]) -> None:
        for event in events:
            if isinstance(event, JobOutput):
                job.trace.job_output(event.data)
                continue
            future = self._exits.get(event.stage)
            if future is not None and not future.done():
                future.set_result(event.exit_code)


def _reader(job: JobContext) -> FileLogReader | KubeletLogReader:
    backoff = Backoff(budget=job.settings.api_budget)
    if job.settings.log_transport == "kubelet":
        return KubeletLogReader(
            client=job.client,
            namespace=job.state.namespace,
            pod=job.state.pod,
            container=podhealth.BUILD_CONTAINER,
            backoff=backoff,
        )
    return FileLogReader(
        client=job.client,
        namespace=job.state.namespace,
        pod=job.state.pod,
        container=podhealth.BUILD_CONTAINER,
        path=job.settings.paths.log_file,
        offset=job.state.offset,
        backoff=backoff,
    )


async def _check_exec_allowed(job: JobContext) -> None:
    """The file transport reads through pods/exec: find out now, not in the middle of a stage."""

    async def probe() -> None:
        session = await streams.open_exec(
            job.client,
            namespace=job.state.namespace,
            pod=job.state.pod,
            container=podhealth.BUILD_CONTAINER,
            command=["true"],
        )
        async with session:
            await session.wait()

    try:
        await retrying.retry(probe, budget=job.settings.api_budget, what="checking that pods/exec is allowed")
    except Forbidden as exc:
        raise TransportError(
            f"the file log transport reads the job log through pods/exec, which the cluster forbids "
            f'({exc.message}); set log_transport = "kubelet" in [runners.kubernetes]'
        ) from exc


async def _write_stdin(job: JobContext, data: bytes) -> None:
    """Write one command line to PID 1, again and again until it surely arrived.

    The lines are idempotent (see `shell.commands`), so a write whose fate a dropped connection
    left unknown is simply repeated. A pod that broke meanwhile ends the tries: the stage's wait
    then reports why.
    """
    loop = asyncio.get_running_loop()
    backoff = Backoff(budget=job.settings.api_budget)
    while not job.broken.done():
        try:
            await streams.attach_write(
                job.client,
                namespace=job.state.namespace,
                pod=job.state.pod,
                container=podhealth.BUILD_CONTAINER,
                data=data,
            )
            return
        except KubeError as exc:
            if not retrying.is_transient(exc):
                raise
            log.info("writing to the stdin of %s failed (%s); trying again", job.state.pod, exc)
            delay = backoff.failed(loop.time())
            if delay is None:
                raise
            await asyncio.sleep(delay)
