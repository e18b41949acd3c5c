"""TCP keepalive on short intervals: the second net under liveness, for every socket the runner opens
to the API server (`kube.sockets`) and to GitLab (`gitlab.client`), each with its own settings.

A connection whose path died without a reset (a NAT entry expired, a node was powered off) stays
ESTABLISHED for hours by default: nothing is sent on an idle socket, so nothing can fail. Keepalive
probes after `idle` seconds, every `interval`, `count` times, make the kernel fail such a socket in
about `idle + interval * count`, and TCP_USER_TIMEOUT does the same for data that is never ACKed.
When TCP_USER_TIMEOUT is set, Linux also ends a keepalive-probed socket by it (once a probe is out
and nothing was heard for that long), so `user_timeout_ms` is the bound either way.
It does not help when a middlebox still ACKs (the fault proxy's silence does): that is what the
runner's own liveness checks (heartbeats, GETs beside watches, read timeouts) are for.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ABORT_CLOSED_TLS = sys.version_info < (3, 12, 8)
"""For aiohttp's connector (`enable_cleanup_closed=`): before Python 3.12.8 a TLS connection closed
after its response (every stream's, every fresh one's) waits up to 30 s for the server's
close_notify, no longer tracked by the pool, so closing the client leaves its socket open (CI saw
one to a busy API server); the connector then aborts it within 2 s, or when it closes."""


@dataclass(frozen=True, slots=True)
class Keepalive:
    idle: int
    """Seconds of quiet before the first probe."""
    interval: int
    """Seconds between unanswered probes."""
    count: int
    user_timeout_ms: int
    """Unacknowledged data (or, once a probe is out, silence) this long fails the socket."""


def set_keepalive(sock: socket.socket, settings: Keepalive) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    # The per-socket knobs are Linux (and most BSDs) only; elsewhere the system's defaults apply.
    for name, value in (
        ("TCP_KEEPIDLE", settings.idle),
        ("TCP_KEEPINTVL", settings.interval),
        ("TCP_KEEPCNT", settings.count),
        ("TCP_USER_TIMEOUT", settings.user_timeout_ms),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def keepalive_factory(settings: Keepalive) -> Callable[[tuple[Any, ...]], socket.socket]:
    """A socket factory for aiohttp's connector (`socket_factory=`): every socket gets `settings`."""

    def make(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
        sock = socket.socket(family=family, type=type_, proto=proto)
        try:
            set_keepalive(sock, settings)
        except OSError:
            sock.close()
            raise
        return sock

    return make
