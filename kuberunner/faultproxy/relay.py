"""One relayed TCP connection: two byte pumps, a shared gate that can stop them, and a real reset.

The relay never looks inside the bytes (TLS passes through untouched). What it adds is the
faults of `proxy.py`, at the TCP level: a reset is SO_LINGER {1, 0} then close, so the kernel sends
RST instead of FIN, as tcpkill's forged segments do; a black hole is the gate being shut, so a pump
holds the chunk it read and stops reading (the kernel's buffers then push back on the sender,
as they would behind a dead route); silence is for good and per connection: both pumps keep
reading and drop every byte, and nothing is ever closed, so both peers' kernels keep ACKing and
each side sees an established, healthy-looking socket on which nothing arrives (a connection
through a TCP-terminating middlebox whose far side died; keepalive probes are answered, so only an
application-level check notices). Half-closes (FIN) are relayed as
half-closes and a reset from either peer is relayed as a reset to the other, so the proxy is
invisible until a fault is asked for. Deciding *when* to fault is left to `proxy.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger("kuberunner.faultproxy")

CONNECT_TIMEOUT = 10.0
"""How long to wait for the target to accept; a relay never hangs forever on a dead target."""

CLOSE_TIMEOUT = 2.0
"""How long a graceful close may wait for the transports to flush."""

Direction = Literal["up", "down"]


@dataclass(slots=True)
class Counters:
    """Running totals, shared by the proxy and its relays (only ever touched from the event loop)."""

    connections_total: int = 0
    resets: int = 0
    reset_rounds: int = 0
    black_holes: int = 0
    refusals: int = 0
    upstream_failures: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    silenced: int = 0
    silence_rounds: int = 0
    bytes_swallowed: int = 0


def _linger_zero(writer: asyncio.StreamWriter) -> None:
    """Make the next close of this socket send RST (and drop unsent bytes) instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    # The socket may already be gone; then there is nothing left to reset.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def hard_close(writer: asyncio.StreamWriter, *, rst: bool) -> None:
    """Close at once, dropping buffered bytes; with `rst` the peer sees ECONNRESET, not EOF."""
    if rst:
        _linger_zero(writer)
    writer.transport.abort()


def _flush_at_once(writer: asyncio.StreamWriter) -> None:
    # With a zero high-water mark `drain()` returns only when the transport's buffer is empty, so
    # bytes a pump has handed over are in the kernel before the gate is looked at again: a black
    # hole then holds everything sent after it began, not "everything but the last 64 KiB".
    writer.transport.set_write_buffer_limits(high=0)


class Relay:
    """Client <-> target for one accepted connection. `run()` is its whole life; `reset()` ends it."""

    def __init__(
        self,
        *,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        target: tuple[str, int],
        flowing: asyncio.Event,
        counters: Counters,
        buffer_size: int,
        on_done: Callable[[Relay], None],
    ) -> None:
        self._client_reader, self._client_writer = client
        self._target = target
        self._flowing = flowing
        self._counters = counters
        self._buffer_size = buffer_size
        self._on_done = on_done
        self._upstream_writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._ended = False
        self._silent = False
        self._gone = asyncio.Event()
        self._silence_timer: asyncio.TimerHandle | None = None
        self.opened_at = asyncio.get_running_loop().time()
        peer = self._client_writer.get_extra_info("peername")
        self.name = f"faultproxy relay {peer!r} -> {target[0]}:{target[1]}"
        _flush_at_once(self._client_writer)

    def attach_task(self, task: asyncio.Task[None]) -> None:
        self._task = task

    def reset(self) -> None:
        """Send RST to both peers now and drop whatever the relay holds."""
        self._end(rst=True)

    @property
    def silent(self) -> bool:
        return self._silent

    def silence(self) -> bool:
        """From now on drop every byte both ways and close nothing; False if already silent or ended."""
        if self._ended or self._silent:
            return False
        self._silent = True
        self._counters.silenced += 1
        log.debug("%s: silenced", self.name)
        return True

    def silence_at(self, when: float) -> None:
        """Go silent at loop time `when` (replacing an earlier plan), unless ended before."""
        if self._silence_timer is not None:
            self._silence_timer.cancel()
        self._silence_timer = asyncio.get_running_loop().call_at(when, self.silence)

    def close(self) -> None:
        """End without a reset (the proxy is shutting down)."""
        self._end(rst=False)

    def _end(self, *, rst: bool) -> None:
        if self._ended:
            return
        self._ended = True
        self._gone.set()
        if self._silence_timer is not None:
            self._silence_timer.cancel()
        for writer in (self._client_writer, self._upstream_writer):
            if writer is not None:
                hard_close(writer, rst=rst)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._on_done(self)

    async def run(self) -> None:
        try:
            # A connection made during a black hole gets no further than the kernel's handshake:
            # the target is not even dialled until traffic flows again.
            await self._flowing.wait()
            upstream = await self._connect()
            if upstream is None:
                return
            up_reader, up_writer = upstream
            failed = False
            try:
                async with asyncio.TaskGroup() as pumps:
                    pumps.create_task(self._pump(self._client_reader, up_writer, "up"))
                    pumps.create_task(self._pump(up_reader, self._client_writer, "down"))
            except* OSError as group:
                log.debug("%s: a peer failed: %s", self.name, group.exceptions[0])
                failed = True
            if failed and not self._silent:
                # One peer reset (or vanished): the other peer learns it the same way.
                self._end(rst=True)
            elif self._silent:
                # A silent connection tells neither peer anything, not even that the other left.
                await self._gone.wait()
            else:
                await self._close_gracefully()
        finally:
            self._end(rst=False)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        host, port = self._target
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=self._buffer_size), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            # The client must not hang on a target that is not there: it sees what a refused or
            # unreachable server would give it, a reset.
            self._counters.upstream_failures += 1
            log.warning("%s: cannot reach the target: %s", self.name, exc)
            self._end(rst=True)
            return None
        if self._ended:  # reset while dialling
            hard_close(writer, rst=True)
            return None
        _flush_at_once(writer)
        self._upstream_writer = writer
        return reader, writer

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, direction: Direction
    ) -> None:
        while True:
            data = await source.read(self._buffer_size)
            if self._silent:
                if not data:
                    return  # no FIN is passed on either
                self._counters.bytes_swallowed += len(data)
                continue
            # The gate is checked after the read: a chunk read just before a black hole began is
            # held here, in order, with the rest left in the kernel's buffers.
            await self._flowing.wait()
            if self._silent:  # silenced during a black hole: the held chunk is dropped too
                continue
            if not data:
                break
            sink.write(data)
            await sink.drain()
            if direction == "up":
                self._counters.bytes_up += len(data)
            else:
                self._counters.bytes_down += len(data)
        # EOF is relayed as a half-close so the other direction keeps flowing.
        if sink.can_write_eof() and not sink.transport.is_closing():
            sink.write_eof()

    async def _close_gracefully(self) -> None:
        writers = [w for w in (self._client_writer, self._upstream_writer) if w is not None]
        for writer in writers:
            writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                for writer in writers:
                    await writer.wait_closed()
