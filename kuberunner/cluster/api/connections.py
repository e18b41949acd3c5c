"""Admission of connections to the API server: who may hold a socket before showing the token.

`create_server(ssl=...)` gives every accepted socket its TLS state and a read buffer
(`SSLProtocol.max_size`, 256 KiB by default) before anything is known about the peer, waits 60 s for
the handshake, and aiohttp then waits up to an hour for the first request head. 17k idle
connections held 5.4 GB. So the gate accepts plain TCP and starts TLS itself, which lets it

- refuse a connection at once, before any TLS state exists, while `max_unauthenticated`
  connections have not yet shown the bearer token;
- close a connection that has completed no request head `header_timeout` after it was accepted
  (handshake included) or after its previous head, for as long as it has not authenticated;
- give server connections their own, smaller TLS read buffer (`_ServerTLS`), and hand freed heap
  back to the kernel after a flood (`heap`).

A connection authenticates when `apiserver.authenticate` accepts its token and calls `trust`. From
then on it does not count, the gate lets go of it, and aiohttp's keep-alive timeout governs its idle
time between requests: watches, log follows and attach/exec WebSockets are never cut here.

Left to others: HTTP parsing and its line/header size limits (aiohttp), the token check
(`apiserver`), body size limits (`requests`).

Lifecycle of a gated connection (`Phase`): HANDSHAKE → AWAITING_HEAD → TRUSTED, and either of the
first two → CLOSED.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import enum
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from kuberunner.cluster.api import heap

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    """Seconds an unauthenticated connection may take to deliver a complete request head: from
    accept (TLS handshake included) for the first, from the previous head for the next. A client on
    loopback needs milliseconds; 10 s leaves room for a loaded machine. (Go's net/http calls this
    span ReadHeaderTimeout.)"""
    max_unauthenticated: int = 256
    """Connections counted from accept until their first request with the token. Each costs a TLS
    object, its read buffer (`_ServerTLS`) and an HTTP parser, ~95 KiB measured, so 256 bound a
    flood to ~24 MB. The runner's connections authenticate with their first request, milliseconds
    after connect, so even 200 jobs starting together hold a handful unauthenticated at a time, and
    authenticated streams (3-4 per job) never count: 256 leaves ample room. While it is full, new
    connections are refused whoever opens them; `header_timeout` bounds how long that lasts."""
    idle_timeout: float = 90.0
    """Seconds an authenticated keep-alive connection may wait for its next request (aiohttp's
    keep-alive timeout, whose default is an hour). Clients drop idle pooled connections sooner
    (the runner's `KubeClient` after 10 s, aiohttp's default 15 s), so this reaps only peers that
    vanished."""
    backlog: int = 512
    """Listen backlog: bursts of connects wait in the kernel instead of being reset by it."""
    burst: int = 64
    """When at least this many connections were unauthenticated at once, the C heap's free pages are
    returned to the kernel once none is left (`heap`): normal clients authenticate within one round
    trip and never get near it, so this runs only after a flood."""

    def __post_init__(self) -> None:
        if self.header_timeout <= 0 or self.idle_timeout <= 0:
            raise ValueError("connection timeouts must be positive")
        if self.max_unauthenticated < 1 or self.backlog < 1:
            raise ValueError("max_unauthenticated and backlog must be at least 1")


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    AWAITING_HEAD = "awaiting a request head"
    TRUSTED = "trusted"
    CLOSED = "closed"


_NEXT: dict[Phase, frozenset[Phase]] = {
    Phase.HANDSHAKE: frozenset({Phase.AWAITING_HEAD, Phase.CLOSED}),
    Phase.AWAITING_HEAD: frozenset({Phase.TRUSTED, Phase.CLOSED}),
    Phase.TRUSTED: frozenset(),
    Phase.CLOSED: frozenset(),
}

AppFactory = Callable[[], asyncio.Protocol]


class _ServerTLS(asyncio.sslproto.SSLProtocol):
    """TLS for one server connection with its own read buffer size. `loop.start_tls` would do the
    rest, but it builds the module's class, whose `max_size` (256 KiB, lowered process-wide by
    `KubeClient.open` in `kuberunner exec`) every TLS connection of the process shares. A server
    reads only requests and stdin: 64 KiB reads cost nothing there, and 256 held connections then
    cost ~24 MB instead of ~72 MB."""

    max_size = 64 * 1024


class ConnectionGate:
    """Counts unauthenticated connections, refuses beyond the cap, and closes the slow ones.

    `protocol` is the factory for `loop.create_server` (no `ssl=`: the gate starts TLS with
    `ssl_context`); `app_factory` makes the HTTP protocol (aiohttp's `web.Server`) once the
    handshake is done."""

    def __init__(
        self, *, limits: ConnectionLimits, ssl_context: ssl.SSLContext, app_factory: AppFactory
    ) -> None:
        self.limits = limits
        self.ssl_context = ssl_context
        self.app_factory = app_factory
        self.accepted = 0
        self.refused = 0
        self.expired = 0
        self._untrusted: set[_GatedConnection] = set()
        self._full = False
        self._peak = 0

    @property
    def unauthenticated(self) -> int:
        return len(self._untrusted)

    def protocol(self) -> asyncio.Protocol:
        return _Acceptor(self)

    def _admit(self, raw: asyncio.Transport) -> None:
        if len(self._untrusted) >= self.limits.max_unauthenticated:
            self.refused += 1
            if not self._full:
                self._full = True
                log.warning(
                    "refusing new connections: %d have not authenticated yet (cap %d)",
                    len(self._untrusted),
                    self.limits.max_unauthenticated,
                )
            raw.abort()
            return
        self._full = False
        self.accepted += 1
        conn = _GatedConnection(self, raw)
        self._untrusted.add(conn)
        self._peak = max(self._peak, len(self._untrusted))
        waiter = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(conn.handshake_ended)
        tls = _ServerTLS(
            asyncio.get_running_loop(),
            conn,
            self.ssl_context,
            waiter,
            server_side=True,
            # typeshed says int; asyncio takes any positive number of seconds.
            ssl_handshake_timeout=self.limits.header_timeout,  # type: ignore[arg-type]
        )
        # Inside the raw socket's connection_made no byte has been read yet (asyncio adds the
        # reader after this callback), so TLS sees the ClientHello from its first byte.
        raw.set_protocol(tls)
        tls.connection_made(raw)

    def _forget(self, conn: _GatedConnection) -> None:
        self._untrusted.discard(conn)
        if not self._untrusted and self._peak >= self.limits.burst:
            self._peak = 0
            heap.release_free_memory()

    def close(self) -> None:
        """Abort every connection not yet authenticated (the server is stopping)."""
        for conn in list(self._untrusted):
            conn.abort()


class _Acceptor(asyncio.Protocol):
    """The protocol of a just-accepted TCP socket: admits it (handing it to TLS) or aborts it."""

    def __init__(self, gate: ConnectionGate) -> None:
        self._gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._gate._admit(transport)


class _GatedConnection(asyncio.Protocol):
    """The TLS transport's protocol until the peer authenticates: it forwards to the HTTP protocol
    and keeps the header deadline, which runs from accept. On `trust` it steps out of the chain,
    so an authenticated stream pays nothing for it."""

    def __init__(self, gate: ConnectionGate, raw: asyncio.Transport) -> None:
        self._gate = gate
        self._raw: asyncio.Transport | None = raw
        self.phase = Phase.HANDSHAKE
        self._tls: asyncio.Transport | None = None
        self._app: asyncio.Protocol | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def _move(self, to: Phase) -> None:
        if to not in _NEXT[self.phase]:
            raise RuntimeError(f"connection cannot go from {self.phase.value} to {to.value}")
        self.phase = to

    def handshake_ended(self, waiter: asyncio.Future[None]) -> None:
        """Success has already called `connection_made`; anything else ends the connection."""
        failure = None if waiter.cancelled() else waiter.exception()
        if self.phase is Phase.HANDSHAKE:
            log.debug("TLS handshake did not complete: %s", failure)
            self.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._move(Phase.AWAITING_HEAD)
        self._tls = transport
        self._app = self._gate.app_factory()
        self._app.connection_made(transport)

    def head_received(self) -> None:
        """A complete request head arrived: the next one has `header_timeout` from now."""
        if self.phase is Phase.AWAITING_HEAD:
            self._arm()

    def trust(self) -> None:
        """The peer showed the token: stop counting it and hand the transport to HTTP alone."""
        if self.phase is not Phase.AWAITING_HEAD:
            return
        self._move(Phase.TRUSTED)
        self._disarm()
        self._gate._forget(self)
        if self._tls is not None and self._app is not None:
            self._tls.set_protocol(self._app)

    def abort(self) -> None:
        if self._raw is not None:
            self._raw.abort()
        self._close()

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._gate.limits.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        self._gate.expired += 1
        log.debug(
            "closing a connection: no request head within %.1f s (%s)",
            self._gate.limits.header_timeout,
            self.phase.value,
        )
        self.abort()

    def _close(self) -> None:
        if self.phase in (Phase.CLOSED, Phase.TRUSTED):
            return
        self._move(Phase.CLOSED)
        self._disarm()
        self._gate._forget(self)

    # Forwarding to the HTTP protocol while the connection is gated.

    def data_received(self, data: bytes) -> None:
        if self._app is not None:
            self._app.data_received(data)

    def eof_received(self) -> bool | None:
        return self._app.eof_received() if self._app is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._close()
        if self._app is not None:
            self._app.connection_lost(exc)
            self._app = None
        self._raw = self._tls = None

    def pause_writing(self) -> None:
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None:
            self._app.resume_writing()


def _gated(request: web.Request) -> _GatedConnection | None:
    transport = request.transport
    protocol: Any = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, _GatedConnection) else None


@web.middleware
async def watch_heads(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: a request head arrived on this connection."""
    conn = _gated(request)
    if conn is not None:
        conn.head_received()
    return await handler(request)


def trust(request: web.Request) -> None:
    """Called by authentication once the request's token is valid."""
    conn = _gated(request)
    if conn is not None:
        conn.trust()


class GatedSite(web.BaseSite):
    """`TCPSite`'s place in an `AppRunner`, listening through a `ConnectionGate` (which does TLS)."""

    __slots__ = ("_gate", "_host", "_port")

    def __init__(self, runner: web.BaseRunner, *, host: str, port: int, gate: ConnectionGate) -> None:
        super().__init__(runner, backlog=gate.limits.backlog)
        self._host = host
        self._port = port
        self._gate = gate

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"https://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._gate.protocol, self._host, self._port, backlog=self._backlog
        )

    async def stop(self) -> None:
        await super().stop()
        self._gate.close()
