"""FaultProxy: a plain TCP relay between the runner and the Kubernetes API server that breaks on demand.

It exists to reproduce, in tests and on a user's own set-up, what the seed did with `tcpkill`:
connections to the API server that die while a job runs. Four faults, each one what a user's
network really does:

- `reset_all()`    every open connection gets RST on both sides (tcpkill, a NAT or firewall flush);
- `black_hole(s)`  no byte moves either way for `s` seconds, yet nothing is closed (a dead route).
                   Afterwards the held bytes are delivered in order, as TCP retransmission would
                   (`then="deliver"`), or every connection is reset (`then="reset"`: the peers gave
                   up, or a middlebox forgot them);
- `silence_all()`  every open connection goes silent for good: bytes are swallowed both ways and
                   nothing is closed or reset. Both kernels keep ACKing, so this is a middlebox that
                   ends TCP itself (a proxy, a load balancer, a TLS-terminating ingress) whose far
                   side died: only the application can notice it, never TCP keepalive. New
                   connections work. (A path that drops every packet, as behind an expired NAT
                   entry or a vanished node, is another failure, which keepalive does catch; the
                   tests make that one with a packet filter, tests/gitlab/blackhole.py.)
                   `silence_after(s)` silences each connection `s` seconds after it opened;
                   `schedule_silence(every)` calls `silence_all()` on a schedule;
- `refuse(s)`      the listening socket is closed for `s` seconds, so connects get ECONNREFUSED (an
                   API server restarting); open connections are left alone.

Faults may overlap: a second black hole or refusal extends the first to the later end. TLS is
relayed untouched, so a kubeconfig needs only the proxy's port (`kubeconfig.py`). The proxy counts
what it did (`stats`), so a test can assert that a fault really happened. One connection's
plumbing lives in `relay.py`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from kuberunner.faultproxy.relay import Counters, Relay, hard_close

log = logging.getLogger("kuberunner.faultproxy")

AfterBlackHole = Literal["deliver", "reset"]

REOPEN_TIMEOUT = 5.0
"""How long to keep retrying to listen again after a refusal (the port is ours; this is a margin)."""

STOP_TIMEOUT = 5.0
"""How long `close()` waits for background tasks before it names the stuck ones."""


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """What the proxy has done so far; a snapshot, so tests compare values, not a moving object."""

    connections_open: int
    connections_total: int
    resets: int
    """Connections reset by a fault (not resets relayed from a peer)."""
    reset_rounds: int
    """Calls of `reset_all()`, scheduled or not, plus black holes that ended in a reset."""
    black_holes: int
    refusals: int
    upstream_failures: int
    """Accepted connections whose target could not be reached (the client was reset)."""
    bytes_up: int
    """Bytes delivered from clients to the target."""
    bytes_down: int
    """Bytes delivered from the target to clients."""
    silenced: int = 0
    """Connections made silent (each counts once)."""
    silence_rounds: int = 0
    """Calls of `silence_all()`, scheduled or not."""
    bytes_swallowed: int = 0
    """Bytes read from either peer of a silent connection and dropped."""


def _check_seconds(seconds: float, what: str) -> None:
    if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {seconds!r}")


class FaultProxy:
    """Listens on `listen_host:listen_port` (0: any free port) and relays every connection to the target."""

    def __init__(
        self,
        *,
        target_host: str,
        target_port: int,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        buffer_size: int = 64 * 1024,
    ) -> None:
        """`buffer_size` bounds what the proxy holds per connection and direction: one chunk in a
        pump plus twice that in the stream reader; beyond it the kernel's buffers push back."""
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        self._target = (target_host, target_port)
        self._listen_host = listen_host
        self._listen_port = listen_port
        self._buffer_size = buffer_size
        self._counters = Counters()
        self._relays: set[Relay] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._closing = False
        self._hole_timer: asyncio.TimerHandle | None = None
        self._hole_end = 0.0
        self._hole_then: AfterBlackHole = "deliver"
        self._refuse_timer: asyncio.TimerHandle | None = None
        self._refuse_end = 0.0
        self._reopen_task: asyncio.Task[None] | None = None
        self._schedule_task: asyncio.Task[None] | None = None
        self._silence_task: asyncio.Task[None] | None = None
        self._silence_after: float | None = None
        self._accepted = asyncio.Event()

    # -- life cycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._port is not None:
            raise RuntimeError("FaultProxy.start() called twice")
        self._server = await self._listen(self._listen_port)
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("fault proxy listening on %s, relaying to %s:%d", self.address, *self._target)

    async def close(self) -> None:
        """Stop listening, end every connection (without a reset) and every background task."""
        if self._closing:
            return
        self._closing = True
        self.stop_schedule()
        self.stop_silence_schedule()
        for timer in (self._hole_timer, self._refuse_timer):
            if timer is not None:
                timer.cancel()
        self._hole_timer = self._refuse_timer = None
        if self._server is not None:
            self._server.close()
        for relay in list(self._relays):
            relay.close()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for task in stuck:
                log.error("fault proxy: task %r did not stop within %.0f s", task.get_name(), STOP_TIMEOUT)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FaultProxy is not started")
        return self._port

    @property
    def address(self) -> str:
        host = f"[{self._listen_host}]" if ":" in self._listen_host else self._listen_host
        return f"{host}:{self.port}"

    # -- faults -----------------------------------------------------------------------------------

    def reset_all(self) -> int:
        """Reset every open connection, both sides, with a real RST. Returns how many were reset."""
        relays = list(self._relays)
        for relay in relays:
            relay.reset()
        self._counters.resets += len(relays)
        self._counters.reset_rounds += 1
        log.info("fault proxy: reset %d connection(s)", len(relays))
        return len(relays)

    def black_hole(self, seconds: float, *, then: AfterBlackHole = "deliver") -> None:
        """Stop all traffic for `seconds`, connections left open; see the module docstring for `then`."""
        _check_seconds(seconds, "black hole duration")
        if then not in ("deliver", "reset"):
            raise ValueError(f"then must be 'deliver' or 'reset', got {then!r}")
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        self._counters.black_holes += 1
        if self._hole_timer is not None:
            self._hole_timer.cancel()
            end = max(end, self._hole_end)
            # Once any overlapping black hole promised a reset, delivering would break that promise.
            then = "reset" if "reset" in (then, self._hole_then) else "deliver"
        self._hole_end, self._hole_then = end, then
        self._flowing.clear()
        self._hole_timer = loop.call_at(end, self._end_black_hole)
        log.info("fault proxy: black hole for %.3g s, then %s", end - loop.time(), then)

    def _end_black_hole(self) -> None:
        self._hole_timer = None
        if self._hole_then == "reset":
            self.reset_all()  # before the gate opens, so not one held byte slips through
        self._flowing.set()
        log.info("fault proxy: black hole over")

    @property
    def black_holed(self) -> bool:
        return not self._flowing.is_set()

    def silence_all(self) -> int:
        """Make every open connection silent for good; returns how many went silent now."""
        count = sum(relay.silence() for relay in list(self._relays))
        self._counters.silence_rounds += 1
        log.info("fault proxy: silenced %d connection(s)", count)
        return count

    def silence_after(self, seconds: float | None) -> None:
        """Each connection, open or future, goes silent `seconds` after it was opened (None: stop)."""
        if seconds is not None:
            _check_seconds(seconds, "silence delay")
        self._silence_after = seconds
        loop = asyncio.get_running_loop()
        for relay in list(self._relays):
            if seconds is not None:
                relay.silence_at(max(loop.time(), relay.opened_at + seconds))

    def schedule_silence(self, every: float, *, count: int | None = None) -> None:
        """Call `silence_all()` every `every` seconds, `count` times (None: until stopped)."""
        self._check_schedule(every, count, "silence interval")
        self.stop_silence_schedule()
        self._silence_task = self._spawn(
            self._periodically(every, count, self.silence_all), "faultproxy silence schedule"
        )

    def stop_silence_schedule(self) -> None:
        if self._silence_task is not None:
            self._silence_task.cancel()
            self._silence_task = None

    async def until_connections(self, total: int) -> None:
        """Returns once `total` connections have been accepted since the start, so a test can fault
        the moment a given one opens (say, a runner's first stream after its REST calls)."""
        while self._counters.connections_total < total:
            self._accepted.clear()
            await self._accepted.wait()

    def silent_connections(self) -> int:
        return sum(relay.silent for relay in self._relays)

    def refuse(self, seconds: float) -> None:
        """Refuse new connections (ECONNREFUSED) for `seconds`; open connections keep working."""
        _check_seconds(seconds, "refusal duration")
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        self._counters.refusals += 1
        if self._refuse_timer is not None:
            self._refuse_timer.cancel()
            end = max(end, self._refuse_end)
        if self._server is not None:
            # Closing the listening socket makes the kernel answer SYNs with RST, which is what a
            # client of a restarting API server sees; connections already accepted are not touched.
            self._server.close()
            self._server = None
        self._refuse_end = end
        self._refuse_timer = loop.call_at(end, self._end_refusal)
        log.info("fault proxy: refusing connections for %.3g s", end - loop.time())

    def _end_refusal(self) -> None:
        self._refuse_timer = None
        # A listen still in progress from an earlier refusal will see the timer gone and keep its socket.
        if self._reopen_task is None or self._reopen_task.done():
            self._reopen_task = self._spawn(self._reopen(), "faultproxy reopen")

    async def _reopen(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REOPEN_TIMEOUT
        while True:
            try:
                server = await self._listen(self.port)
                break
            except OSError as exc:
                if loop.time() > deadline:
                    log.error("fault proxy: cannot listen on %s again: %s", self.address, exc)
                    raise
                await asyncio.sleep(0.05)
        if self._closing or self._refuse_timer is not None:
            # Closed, or a new refusal began while binding: its own timer will listen again.
            server.close()
            return
        self._server = server
        log.info("fault proxy: accepting connections again")

    @property
    def refusing(self) -> bool:
        return self._port is not None and self._server is None and not self._closing

    def schedule_resets(self, every: float, *, count: int | None = None) -> None:
        """Call `reset_all()` every `every` seconds, `count` times (None: until `close()`/`stop_schedule()`).
        A new schedule replaces the previous one."""
        self._check_schedule(every, count, "reset interval")
        self.stop_schedule()
        self._schedule_task = self._spawn(
            self._periodically(every, count, self.reset_all), "faultproxy reset schedule"
        )

    @staticmethod
    def _check_schedule(every: float, count: int | None, what: str) -> None:
        _check_seconds(every, what)
        if every == 0:
            raise ValueError(f"{what} must be > 0")
        if count is not None and count < 0:
            raise ValueError(f"count must be >= 0, got {count}")

    def stop_schedule(self) -> None:
        if self._schedule_task is not None:
            self._schedule_task.cancel()
            self._schedule_task = None

    async def _periodically(self, every: float, count: int | None, fault: Callable[[], int]) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        done = 0
        while count is None or done < count:
            # Deadlines from a fixed origin, so a slow round does not stretch the period.
            due += every
            await asyncio.sleep(max(0.0, due - loop.time()))
            fault()
            done += 1

    @property
    def schedule_running(self) -> bool:
        return self._schedule_task is not None and not self._schedule_task.done()

    # -- counters ---------------------------------------------------------------------------------

    @property
    def stats(self) -> ProxyStats:
        c = self._counters
        return ProxyStats(
            connections_open=len(self._relays),
            connections_total=c.connections_total,
            resets=c.resets,
            reset_rounds=c.reset_rounds,
            black_holes=c.black_holes,
            refusals=c.refusals,
            upstream_failures=c.upstream_failures,
            bytes_up=c.bytes_up,
            bytes_down=c.bytes_down,
            silenced=c.silenced,
            silence_rounds=c.silence_rounds,
            bytes_swallowed=c.bytes_swallowed,
        )

    @property
    def connections_open(self) -> int:
        return len(self._relays)

    @property
    def connections_total(self) -> int:
        return self._counters.connections_total

    @property
    def resets(self) -> int:
        return self._counters.resets

    @property
    def bytes_up(self) -> int:
        return self._counters.bytes_up

    @property
    def bytes_down(self) -> int:
        return self._counters.bytes_down

    # -- plumbing ---------------------------------------------------------------------------------

    async def _listen(self, port: int) -> asyncio.Server:
        return await asyncio.start_server(
            self._accept, self._listen_host, port, limit=self._buffer_size, reuse_address=True
        )

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            hard_close(writer, rst=True)
            return
        relay = Relay(
            client=(reader, writer),
            target=self._target,
            flowing=self._flowing,
            counters=self._counters,
            buffer_size=self._buffer_size,
            on_done=self._relays.discard,
        )
        self._relays.add(relay)
        self._counters.connections_total += 1
        if self._silence_after is not None:
            relay.silence_at(relay.opened_at + self._silence_after)
        self._accepted.set()
        relay.attach_task(self._spawn(relay.run(), relay.name))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Every background task is named, kept (so it is not garbage-collected) and logged if it fails."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("fault proxy: task %r failed", task.get_name(), exc_info=exc)
