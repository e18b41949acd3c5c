"""The `kubelet` log transport, the seed's own: output from `pods/log?follow&timestamps`, no exec at all.

Stage output goes to PID 1's stdout, which the runtime keeps as a CRI log. After any drop the reader
asks again from the last line's second and skips exactly the bytes it already delivered, so
nothing is lost or repeated. Its known limits: the runtime holds a partial line until its newline
(or 16 KiB), and this reader until its newline or `kubelet_records.OPEN_LINE_LIMIT` (the kubelet
timestamps lines, not the runtime's pieces); CRLF becomes LF. The kubelet serves only the current
log file: what it rotated away (10 MiB by default) before it was read is gone, and when a stage's
marker went with it the stage is `Lost` within seconds (`shell.commands.probe_stage`). A runner
restart adopting the job resumes at a line boundary (`ResumePoint.at_line_start`: the journal
keeps no `open_bytes`), so a line still open and over that limit at the restart shows its
delivered part twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from kuberunner.executor.backoff import Backoff
from kuberunner.executor.file_transport import TransportError
from kuberunner.executor.kubelet_records import MalformedLog, RecordParser, ResumePoint
from kuberunner.kube import streams
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import (
    ApiStatusError,
    ApiUnreachable,
    Forbidden,
    NotFound,
    StreamIdle,
    StreamLost,
)

log = logging.getLogger(__name__)


class KubeletLogReader:
    def __init__(
        self,
        *,
        client: KubeClient,
        namespace: str,
        pod: str,
        container: str,
        backoff: Backoff | None = None,
        read_timeout: float = streams.LOG_IDLE_TIMEOUT,
        on_reconnect: Callable[[], None] = lambda: None,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._pod = pod
        self._container = container
        self._backoff = backoff or Backoff()
        self._read_timeout = read_timeout
        self.resume = ResumePoint()
        self.reconnects = 0
        self.gaps = asyncio.Event()
        """Set when output may have been rotated away unread (`ResumePoint.gap_possible`)."""
        self._gap_from = ""
        self._gap_reported = ""
        self._on_reconnect = on_reconnect

    async def chunks(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        parser = RecordParser()
        while True:
            parser.reset(resuming=self.resume.since_time() is not None)
            self._gap_from = self.resume.timestamp
            self.resume.restart()
            try:
                async for body in streams.follow_log(
                    self._client,
                    namespace=self._namespace,
                    pod=self._pod,
                    container=self._container,
                    timestamps=True,
                    since_time=self.resume.since_time(),
                    read_timeout=self._read_timeout,
                ):
                    self._backoff.healthy()
                    data = b"".join(self.resume.take(r) for r in parser.feed(body))
                    self._note_gap()
                    if data:
                        yield data
                tail = b"".join(self.resume.take(r) for r in parser.flush())
                if tail:
                    yield tail
                reason = "the log stream ended"
            except StreamIdle as exc:
                # The API answered; the container was just quiet (a helper container is, for most of
                # the job): not a failure that may use up the unreachable budget.
                self._backoff.healthy()
                reason = str(exc)
            except (ApiUnreachable, StreamLost) as exc:
                reason = str(exc)
            except Forbidden as exc:
                raise TransportError(f"reading the job log needs pods/log: {exc.message}") from exc
            except NotFound as exc:
                raise TransportError(f"pod {self._namespace}/{self._pod} was deleted") from exc
            except ApiStatusError as exc:
                reason = exc.message  # e.g. 400 "waiting to start": try again
            except MalformedLog as exc:
                raise TransportError(f"unreadable pods/log body: {exc}") from exc
            self.resume.stream_ended()
            self._note_gap()
            delay = self._backoff.failed(loop.time())
            if delay is None:
                raise TransportError(f"the Kubernetes API stayed unreachable: {reason}")
            log.info(
                "log stream of %s ended (%s); resuming after %s", self._pod, reason, self.resume.timestamp
            )
            self.reconnects += 1
            self._on_reconnect()
            await asyncio.sleep(delay)

    def _note_gap(self) -> None:
        if not self.resume.gap_possible():
            return
        if self._gap_reported != self._gap_from:
            self._gap_reported = self._gap_from
            log.warning(
                "the kubelet may have rotated the log of %s/%s past what was read: output after %s "
                "can be missing from the trace",
                self._pod,
                self._container,
                self._gap_from,
            )
        self.gaps.set()
