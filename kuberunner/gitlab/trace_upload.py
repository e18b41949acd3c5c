"""The job log on its way to GitLab: a bounded buffer (sans-I/O) and the task that PATCHes it.

`TraceBuffer` keeps every byte of the (already masked, already limited) trace, because GitLab may
answer 416 with a smaller `Range` and the runner must resend from there; it is bounded by
`max_bytes`, past which bytes are dropped (the trace's own `output_limit` keeps a job far below it).
It also keeps the CRC32 and size GitLab checks in the final update. `TraceSink` is the trace's sink
(synchronous: the trace does no I/O); `TraceUploader` sends the bytes in the background, at the
interval GitLab advertises, and reports each reply's `Job-Status` to whoever runs the job.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from kuberunner.gitlab.client import GitLabClient, GitLabError, TraceReply

log = logging.getLogger(__name__)

PATCH_LIMIT = 1 << 20
"""GitLab Runner sends at most 1 MiB per PATCH."""
DEFAULT_MAX_BYTES = 64 << 20
RESYNC_RETRY = 0.1
"""Seconds between tries while re-syncing after a 416."""


@dataclass(frozen=True, slots=True)
class Chunk:
    start: int
    data: bytes


class TraceBuffer:
    """What was written and what GitLab has accepted; see the module docstring."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES, origin: int = 0, crc: int = 0) -> None:
        """`origin` and `crc`: the trace continues one whose first `origin` bytes (with that CRC32)
        another process sent; only what follows is kept here (a restarted runner's re-sync)."""
        self._data = bytearray()
        self._max = max_bytes
        self._crc = crc
        self.origin = origin
        self.sent = origin
        """Bytes GitLab holds, as far as we know."""
        self.dropped = 0

    @property
    def size(self) -> int:
        return self.origin + len(self._data)

    @property
    def crc(self) -> int:
        return self._crc & 0xFFFFFFFF

    @property
    def checksum(self) -> str:
        return f"crc32:{self._crc & 0xFFFFFFFF:08x}"

    def data(self) -> bytes:
        return bytes(self._data)

    def span(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the trace, counted from its very beginning (what this buffer holds)."""
        return bytes(self._data[max(start - self.origin, 0) : max(end - self.origin, 0)])

    def append(self, data: bytes) -> None:
        room = self._max - self.size
        kept = data[: max(room, 0)]
        self.dropped += len(data) - len(kept)
        self._data += kept
        self._crc = zlib.crc32(kept, self._crc)

    def next_chunk(self, *, limit: int = PATCH_LIMIT) -> Chunk | None:
        if self.sent >= self.size:
            return None
        at = self.sent - self.origin
        return Chunk(self.sent, bytes(self._data[at : at + limit]))

    def accepted(self, chunk: Chunk) -> None:
        self.sent = chunk.start + len(chunk.data)

    def rewind(self, server_size: int) -> None:
        """A 416: GitLab holds `server_size` bytes; the next chunk starts there. A continued trace
        (origin > 0) may be behind GitLab: the bytes it makes again up to `server_size` are not sent."""
        ceiling = max(self.size, server_size) if self.origin else self.size
        self.sent = min(max(server_size, self.origin), ceiling)


class TraceSink:
    """The `Trace` sink that feeds a `TraceBuffer` and nudges the uploader."""

    def __init__(self, buffer: TraceBuffer, wake: Callable[[], None]) -> None:
        self._buffer = buffer
        self._wake = wake

    def write(self, data: bytes) -> None:
        self._buffer.append(data)
        self._wake()

    def close(self) -> None:
        self._wake()


StatusCallback = Callable[[TraceReply], None]


class TraceUploader:
    """PATCHes the buffer's new bytes every `interval` seconds (GitLab may change it)."""

    def __init__(
        self,
        *,
        client: GitLabClient,
        job_id: int,
        job_token: str,
        buffer: TraceBuffer,
        on_reply: StatusCallback,
        interval: float = 3.0,
        on_accepted: Callable[[int], None] | None = None,
        on_sending: Callable[[Chunk], None] | None = None,
    ) -> None:
        self._client = client
        self._job_id = job_id
        self._token = job_token
        self.buffer = buffer
        self._on_reply = on_reply
        self._on_accepted = on_accepted
        self._on_sending = on_sending
        """Told of each chunk before it goes out (a restarted runner may find GitLab holds it)."""
        """Told how many bytes GitLab holds after each accepted PATCH."""
        self.interval = interval
        self._written = asyncio.Event()
        self._stop = asyncio.Event()
        self.last_success = asyncio.get_running_loop().time()
        self.gone = False
        """True once GitLab said the job is not ours any more (403/404): stop sending."""
        self._resyncing = False
        """After a 416 until the next accepted PATCH: GitLab waits for bytes from its own size on,
        which a continued trace may be about to make again; try again soon, not an interval later."""

    def continue_trace(self, buffer: TraceBuffer) -> None:
        """Send `buffer`, which continues a trace another process began: where GitLab stands is
        learnt from its first answer, so the first PATCHes go out as soon as there are bytes."""
        self.buffer = buffer
        self._resyncing = True

    def sink(self) -> TraceSink:
        return TraceSink(self.buffer, self._written.set)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Until `stop()`: wait for new bytes, send them, wait the interval."""
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            await self._send_pending()
            next_at = loop.time() + (min(self.interval, RESYNC_RETRY) if self._resyncing else self.interval)
            self._written.clear()
            while not self._stop.is_set() and loop.time() < next_at:
                stopped = asyncio.ensure_future(self._stop.wait())
                try:
                    await asyncio.wait_for(asyncio.shield(stopped), timeout=next_at - loop.time())
                except TimeoutError:
                    pass
                finally:
                    stopped.cancel()

    async def flush(self, *, attempts: int = 20) -> bool:
        """Send everything left; True when GitLab holds the whole trace."""
        for _ in range(attempts):
            if self.gone or self.buffer.next_chunk() is None:
                break
            if not await self._send_pending():
                await asyncio.sleep(min(self.interval, 3.0))
        return self.buffer.next_chunk() is None

    async def _send_pending(self) -> bool:
        """One round of PATCHes; False when a reply asks to wait (416, an error)."""
        while not self.gone:
            chunk = self.buffer.next_chunk()
            if chunk is None:
                return True
            if self._on_sending is not None:
                self._on_sending(chunk)
            try:
                reply = await self._client.patch_trace(
                    job_id=self._job_id, job_token=self._token, start=chunk.start, data=chunk.data
                )
            except GitLabError as exc:
                log.warning("job %d: %s", self._job_id, exc)
                return False
            if reply.update_interval is not None:
                self.interval = reply.update_interval
            self._on_reply(reply)
            if reply.status == 202:
                self.buffer.accepted(chunk)
                self._resyncing = False
                self.last_success = asyncio.get_running_loop().time()
                if self._on_accepted is not None:
                    self._on_accepted(self.buffer.sent)
            elif reply.status == 416:
                self.buffer.rewind(reply.range_end if reply.range_end is not None else 0)
                self._resyncing = True
                return False
            elif reply.status in (403, 404):
                self.gone = True
                return False
            else:
                log.warning("job %d: sending the trace: GitLab answered %d", self._job_id, reply.status)
                return False
        return False
