"""The API server's TCP keepalive: every socket `client.py` opens (REST pool, fresh connections,
watches, log follows, attach and exec WebSockets) is made by `keepalive_factory(DEFAULT_KEEPALIVE)`.

These are wider than GitLab's: on this side the runner's own liveness checks (WebSocket heartbeats,
GETs beside quiet watches, REST call bounds) notice a silence within seconds; keepalive is the net
under them, for a path that drops every packet.
"""

from __future__ import annotations

from kuberunner.tcp_keepalive import Keepalive, keepalive_factory, set_keepalive

__all__ = ["DEFAULT_KEEPALIVE", "Keepalive", "keepalive_factory", "set_keepalive"]

DEFAULT_KEEPALIVE = Keepalive(idle=15, interval=5, count=3, user_timeout_ms=30_000)
"""A probe after 15 s of quiet, far below any NAT's idle timeout (minutes); a dead path fails the
socket after 30 s."""
