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


@dataclass(frozen=True, slots=True)
class Chunk:
    start: int
    data: bytes


class TraceBuffer:
    """What was written and what GitLab has accepted; see the module docstring."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._data = bytearray()
        self._max = max_bytes
        self._crc = 0
        self.sent = 0
        """Bytes GitLab holds, as far as we know."""
        self.dropped = 0

    @property
    def size(self) -> int:
        return len(self._data)

    @property
    def checksum(self) -> str:
        return f"crc32:{self._crc & 0xFFFFFFFF:08x}"

    def data(self) -> bytes:
        return bytes(self._data)

    def append(self, data: bytes) -> None:
        room = self._max - len(self._data)
        kept = data[: max(room, 0)]
        self.dropped += len(data) - len(kept)
        self._data += kept
        self._crc = zlib.crc32(kept, self._crc)

    def next_chunk(self, *, limit: int = PATCH_LIMIT) -> Chunk | None:
        if self.sent >= len(self._data):
            return None
        return Chunk(self.sent, bytes(self._data[self.sent : self.sent + limit]))

    def accepted(self, chunk: Chunk) -> None:
        self.sent = chunk.start + len(chunk.data)

    def rewind(self, server_size: int) -> None:
        """A 416: GitLab holds `server_size` bytes; the next chunk starts there."""
        self.sent = min(max(server_size, 0), len(self._data))


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

    def __init__(self, *, client: GitLabClient, job_id: int, job_token: str, buffer: TraceBuffer,
                 on_reply: StatusCallback, interval: float = 3.0) -> None:
        self._client = client
        self._job_id = job_id
        self._token = job_token
        self.buffer = buffer
        self._on_reply = on_reply
        self.interval = interval
        self._written = asyncio.Event()
        self._stop = asyncio.Event()
        self.last_success = asyncio.get_running_loop().time()
        self.gone = False
        """True once GitLab said the job is not ours any more (403/404): stop sending."""

    def sink(self) -> TraceSink:
        return TraceSink(self.buffer, self._written.set)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Until `stop()`: wait for new bytes, send them, wait the interval."""
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            await self._send_pending()
            next_at = loop.time() + self.interval
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
            try:
                reply = await self._client.patch_trace(
                    job_id=self._job_id, job_token=self._token, start=chunk.start, data=chunk.data)
            except GitLabError as exc:
                log.warning("job %d: %s", self._job_id, exc)
                return False
            if reply.update_interval is not None:
                self.interval = reply.update_interval
            self._on_reply(reply)
            if reply.status == 202:
                self.buffer.accepted(chunk)
                self.last_success = asyncio.get_running_loop().time()
            elif reply.status == 416:
                self.buffer.rewind(reply.range_end if reply.range_end is not None else 0)
                return False
            elif reply.status in (403, 404):
                self.gone = True
                return False
            else:
                log.warning("job %d: sending the trace: GitLab answered %d", self._job_id, reply.status)
                return False
        return False
