"""The `listen_address` server: `/metrics` (Prometheus text) and `/health`, on the runner's own loop.

It runs on the loop that runs the jobs, so a scrape reads the counters between two steps of a job and
never in the middle of one. It is a listening socket anyone on the network may reach: requests are
bounded (short request line, few small headers, no body is ever read, few connections, none held
long while others wait), and only GET and HEAD of the two paths are answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger("kuberunner.runner")

DEFAULT_PORT = 9252
"""GitLab Runner's: the port Prometheus allocated to it."""
LIMITS: dict[str, Any] = {
    "max_line_size": 2048,
    "max_field_size": 2048,
    "max_headers": 32,
    "keepalive_timeout": 15.0,
    "lingering_time": 1.0,
}
MAX_CONNECTIONS = 16
MAX_CONNECTION_AGE = 30.0
"""Seconds a connection may stay open once another one comes; a scrape takes milliseconds."""
_ADDRESS = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\[\]:]*))(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str | None
    """None: every interface (`:9252`)."""
    port: int

    def __str__(self) -> str:
        host = self.host or ""
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


def parse_listen_address(text: str) -> ListenAddress:
    """GitLab Runner's `[host]:port` (port 9252 when left out); ValueError saying what is wrong."""
    found = _ADDRESS.match(text.strip())
    if found is None:
        raise ValueError(f"expected [host]:port (e.g. 127.0.0.1:9252 or :9252), not {text!r}")
    port = int(found.group("port") or DEFAULT_PORT)
    if port > 65535:
        raise ValueError(f"port {port} is above 65535")
    host = found.group("v6") or found.group("host") or None
    return ListenAddress(host, port)


Health = Callable[[], dict[str, Any]]


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, health: Health) -> None:
        self._registry = registry
        self._health = health
        app = web.Application(client_max_size=1024)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health_page)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, **LIMITS)
        self._listening: asyncio.Server | None = None
        self._opened: dict[RequestHandler, float] = {}
        """Connections by when they came, oldest first, until seen closed."""
        self._seen_open: set[RequestHandler] = set()
        """Those the server has counted as open (it learns of a new one a moment after it is made)."""
        self.address: ListenAddress | None = None

    async def start(self, address: ListenAddress) -> ListenAddress:
        """Listen on `address`; the address really bound (port 0 picks one). OSError if it cannot."""
        await self._runner.setup()
        try:
            self._listening = await asyncio.get_running_loop().create_server(
                self._connection, address.host, address.port, backlog=64, reuse_address=True
            )
        except OSError:
            await self._runner.cleanup()
            raise
        port = int(self._listening.sockets[0].getsockname()[1])
        self.address = ListenAddress(address.host, port)
        return self.address

    def _connection(self) -> RequestHandler:
        """A new connection's protocol. aiohttp never times out a connection that sends nothing, so
        each new one first closes those older than MAX_CONNECTION_AGE, then, past MAX_CONNECTIONS,
        the oldest: silent clients can neither take the descriptors the jobs need nor keep a
        scraper out. (asyncio accepts a burst of up to `backlog` at once, before the server has
        started on any of them: the cap holds again from the next connection.)"""
        server = self._runner.server
        assert server is not None
        now = time.monotonic()
        open_now = set(server.connections)
        self._seen_open = (self._seen_open | open_now) & set(self._opened)
        for handler, since in list(self._opened.items()):
            if handler in self._seen_open and handler not in open_now:
                self._forget(handler)
            elif handler in self._seen_open and now - since > MAX_CONNECTION_AGE:
                handler.force_close()
                self._forget(handler)
        # Only a connection the server has started on can be closed; the others are newer anyway.
        started = [handler for handler in self._opened if handler in self._seen_open]
        for oldest in started[: max(0, len(self._opened) + 1 - MAX_CONNECTIONS)]:
            oldest.force_close()
            self._forget(oldest)
        handler = server()
        self._opened[handler] = now
        return handler

    def _forget(self, handler: RequestHandler) -> None:
        del self._opened[handler]
        self._seen_open.discard(handler)

    async def close(self) -> None:
        if self._listening is not None:
            self._listening.close()
        await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        # The 0.0.4 text format: what every Prometheus and prometheus-client's parser read.
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def _health_page(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self._health()) + "\n", content_type="application/json")
