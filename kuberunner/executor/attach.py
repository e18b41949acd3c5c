"""The attach strategy: one command line per stage into PID 1's stdin, output from the log file.

The stage's exit code comes only from its marker, whose nonce the job cannot read; the output is
read through the `file` transport from a byte offset that survives reconnects.

A stage's start and kill lines go to the PID 1 of the container the job's `StagePlan` names for
it (`build`, or `helper` for a GitLab job's get_sources). With the `file` transport every container
appends to the one log file on the shared logs volume, read from the build container. With the
`kubelet` transport each container's stdout is its own container log, so each container has its
own reader and marker scanner; stages run one at a time, so the trace still gets the output in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable
from typing import Any

from kuberunner.executor import podhealth, retrying
from kuberunner.executor.backoff import Backoff
from kuberunner.executor.file_transport import FileLogReader, TransportError
from kuberunner.executor.kubelet_records import ResumePoint
from kuberunner.executor.kubelet_transport import KubeletLogReader
from kuberunner.executor.stages import BUILD_CONTAINER
from kuberunner.executor.strategy import Exited, JobContext, Lost, StageEnd, Stopped
from kuberunner.executor.waiting import first_of
from kuberunner.kube import streams
from kuberunner.kube.errors import KubeError
from kuberunner.shell import commands
from kuberunner.shell.markers import JobOutput, MarkerScanner, StageExited

log = logging.getLogger(__name__)


class AttachStrategy:
    name = "attach"

    def __init__(self) -> None:
        self._scanners: dict[str, MarkerScanner] = {}
        """One per output stream, by the container it is read from."""
        self._exits: dict[str, asyncio.Future[int]] = {}
        self._pumps: list[asyncio.Task[None]] = []
        self._parked: dict[str, bytes] = {}
        """Log bytes that followed a stage's marker, kept until the next stage is expected: a runner
        taking a job over reads later stages' output and markers already in the log."""
        self._started: set[str] = set()
        """Tokens of the stages this strategy started: a start it made is never taken over again."""
        self._readers: dict[str, FileLogReader | KubeletLogReader] = {}

    async def open(self, job: JobContext) -> None:
        readers = {stream: _reader(job, stream) for stream in _streams(job)}
        self._readers = readers
        for stream, reader in readers.items():
            self._scanners[stream] = MarkerScanner()
            name = f"{job.state.pod}: output of {stream}"
            self._pumps.append(asyncio.create_task(self._pump_output(job, stream, reader), name=name))
        for reader, pump in zip(readers.values(), self._pumps, strict=True):
            if isinstance(reader, FileLogReader):
                await _until_connected(job, reader, pump)

    async def close(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        for pump in self._pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def run_stage(self, job: JobContext, stage: str, *, deadline: float) -> StageEnd:
        loop = asyncio.get_running_loop()
        state = job.state
        nonce, token = secrets.token_hex(16), secrets.token_hex(8)
        if state.stage == stage and state.nonce and state.token and state.token not in self._started:
            # Taken over after a restart: the start line is idempotent, so writing it again with the
            # same nonce and token starts the stage only if it never started. Only a start made by
            # another runner qualifies: this strategy's own earlier run of the same stage has ended,
            # and its guard would turn a new start line into a no-op waiting for a spent marker.
            nonce, token = state.nonce, state.token
        self._started.add(token)
        exited: asyncio.Future[int] = loop.create_future()
        self._exits[stage] = exited
        job.state.stage, job.state.nonce, job.state.token = stage, nonce, token
        stream = _stream_of(job, stage)
        scanner = self._scanners[stream]
        scanner.expect(stage=stage, nonce=nonce)
        parked = self._parked.pop(stream, b"")
        if parked:
            self._dispatch(job, stream, scanner.feed(parked))
        self._note_held(job, stream)
        job.report("stage")
        container = job.plan.container(stage)
        paths = job.settings.paths
        to_log_file = job.settings.log_transport == "file"
        line = commands.start_stage(
            paths=paths, stage=stage, nonce=nonce, token=token, to_log_file=to_log_file
        )
        asked = loop.time()
        await _write_stdin(job, container, line)
        job.settings.observer.stage_started(stage, loop.time() - asked)
        reader = self._readers[stream]
        gaps = reader.gaps if isinstance(reader, KubeletLogReader) else asyncio.Event()
        while True:
            waits: list[Awaitable[object]] = [exited, job.broken, job.cancel.wait(), gaps.wait()]
            await first_of(waits, within=deadline - loop.time())
            if exited.done() or job.broken.done() or job.cancel.is_set() or not gaps.is_set():
                break
            gaps.clear()
            probe = commands.probe_stage(paths=paths, stage=stage, nonce=nonce, token=token)
            await _write_stdin(job, container, probe)
        if exited.done() and exited.result() == commands.LOST_EXIT_CODE:
            return Lost(
                f"the kubelet rotated the log of the {container} container away before it was read: the "
                f"end of stage {stage}'s output and its exit code are gone (the file log transport has no "
                "such limit)"
            )
        if exited.done():
            return Exited(exited.result())
        if job.broken.done():
            return Lost(job.broken.result())
        await _write_stdin(job, container, commands.kill_stage(paths=paths, token=token))
        await first_of([exited, job.broken], within=job.settings.kill_grace)
        return Stopped(canceled=job.cancel.is_set())

    async def _pump_output(
        self, job: JobContext, stream: str, reader: FileLogReader | KubeletLogReader
    ) -> None:
        scanner = self._scanners[stream]
        try:
            async for chunk in reader.chunks():
                if isinstance(reader, FileLogReader):
                    job.state.offset = reader.offset
                else:
                    job.state.records[stream] = reader.resume.at_line_start()
                self._dispatch(job, stream, scanner.feed(chunk))
                self._note_held(job, stream)
                job.report("output")
        except TransportError as exc:
            job.mark_broken(await podhealth.reason_or(job.broken, str(exc)))
        finally:
            job.trace.job_output(scanner.without_spent(self._parked.pop(stream, b"")))
            self._dispatch(job, stream, scanner.flush())

    def _note_held(self, job: JobContext, stream: str) -> None:
        scanner = self._scanners[stream]
        job.state.held = scanner.held + len(self._parked.get(stream, b""))
        job.state.clean = scanner.awaiting is not None

    def _dispatch(self, job: JobContext, stream: str, events: list[JobOutput | StageExited]) -> None:
        for event in events:
            if isinstance(event, JobOutput):
                if stream in self._parked:
                    self._parked[stream] += event.data
                else:
                    job.trace.job_output(event.data)
                continue
            # What follows the marker waits for the next stage's expectation (or the end).
            self._parked.setdefault(stream, b"")
            future = self._exits.get(event.stage)
            if future is not None and not future.done():
                future.set_result(event.exit_code)


def _streams(job: JobContext) -> tuple[str, ...]:
    """The containers whose output is read: the one holding the shared log file, or every container."""
    return job.plan.containers if job.settings.log_transport == "kubelet" else (BUILD_CONTAINER,)


def _stream_of(job: JobContext, stage: str) -> str:
    return job.plan.container(stage) if job.settings.log_transport == "kubelet" else BUILD_CONTAINER


def _reader(job: JobContext, container: str) -> FileLogReader | KubeletLogReader:
    backoff = Backoff(budget=job.settings.api_budget)
    if job.settings.log_transport == "kubelet":
        reader = KubeletLogReader(
            client=job.client,
            namespace=job.state.namespace,
            pod=job.state.pod,
            container=container,
            backoff=backoff,
            on_reconnect=lambda: job.settings.observer.stream_reconnected("pods/log"),
        )
        if container in job.state.records:
            # Taken over after a restart: go on after the last record the trace holds.
            timestamp, seen = job.state.records[container]
            reader.resume = ResumePoint(timestamp=timestamp, seen_at_timestamp=seen)
        return reader
    return FileLogReader(
        client=job.client,
        namespace=job.state.namespace,
        pod=job.state.pod,
        container=container,
        path=job.settings.paths.log_file,
        status_path=job.settings.paths.log_status_file,
        wake_fifo=job.settings.paths.log_wake_fifo,
        offset=job.state.offset,
        backoff=backoff,
        on_reconnect=lambda: job.settings.observer.stream_reconnected("log"),
    )


async def _until_connected(job: JobContext, reader: FileLogReader, pump: asyncio.Task[None]) -> None:
    """The file transport reads through pods/exec: know that it may before any stage starts.

    The reader's own first exec is that check (a separate probe cost a round trip through the
    kubelet on every job); a reader that gave up (exec forbidden, no shell, API gone past the
    budget) has said why in `job.broken`.
    """
    connected = asyncio.ensure_future(reader.connected.wait())
    either: set[asyncio.Future[Any]] = {connected, pump, job.broken}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        connected.cancel()
    if not reader.connected.is_set():
        raise TransportError(job.broken.result() if job.broken.done() else "the log reader ended at once")


async def _write_stdin(job: JobContext, container: str, data: bytes) -> None:
    """Write one command line to the PID 1 of `container`, again and again until it surely arrived.

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
                container=container,
                data=data,
            )
            return
        except KubeError as exc:
            if not retrying.is_transient(exc):
                raise
            log.info("writing to the stdin of %s failed (%s); trying again", job.state.pod, exc)
            job.settings.observer.stream_reconnected("stdin")
            delay = backoff.failed(loop.time())
            if delay is None:
                raise
            await asyncio.sleep(delay)
