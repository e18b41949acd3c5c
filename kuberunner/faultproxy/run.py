"""`run_proxy`: the fault proxy as a long-running command (what `kuberunner proxy` calls).

A user points their runner at it (see `rewrite_kubeconfig`) and breaks connections on a schedule,
or by hand with signals, like the seed's `tcpkill`: SIGUSR1 resets every connection, SIGUSR2 starts
a black hole, SIGHUP silences every open connection. It only listens on loopback: it relays the API
server's credentials path and is a test tool, not a service for the network. Parsing command-line
options and printing are the CLI's job; this module checks its inputs and raises `BadInput` for
nonsense, so the CLI can exit 2 with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import signal
from collections.abc import Callable

from kuberunner.errors import BadInput
from kuberunner.faultproxy.address import parse_address
from kuberunner.faultproxy.proxy import AfterBlackHole, FaultProxy, ProxyStats

log = logging.getLogger("kuberunner.faultproxy")


def _check(value: float | None, what: str, *, zero_ok: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise BadInput(f"{what} must be a number of seconds {'>=' if zero_ok else '>'} 0, got {value}")


def check_loopback(host: str, listen: str) -> None:
    """Refuse to listen anywhere but loopback: whoever reaches the proxy reaches the API server."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise BadInput(
            f"--listen {listen}: the fault proxy only listens on loopback (127.0.0.1, ::1, localhost);"
            " it would expose the API server to the network"
        )


async def _black_holes(proxy: FaultProxy, every: float, seconds: float, then: AfterBlackHole) -> None:
    loop = asyncio.get_running_loop()
    due = loop.time()
    while True:
        due += every
        await asyncio.sleep(max(0.0, due - loop.time()))
        proxy.black_hole(seconds, then=then)


async def run_proxy(
    target: str,
    listen: str,
    reset_every: float | None,
    *,
    reset_count: int | None = None,
    black_hole_every: float | None = None,
    black_hole_for: float = 3.0,
    black_hole_then: AfterBlackHole = "deliver",
    silence_after: float | None = None,
    silence_every: float | None = None,
    handle_signals: bool = False,
    on_ready: Callable[[FaultProxy], None] | None = None,
    stop: asyncio.Event | None = None,
) -> ProxyStats:
    """Relay `listen` -> `target` (both `HOST:PORT`, `PORT` or a URL) until `stop` is set or the task
    is cancelled, and return what the proxy did.

    `reset_every`: reset all connections this often (`reset_count` times, None: forever).
    `black_hole_every`/`black_hole_for`/`black_hole_then`: a black hole of that length this often.
    `silence_after`: every connection goes silent for good this long after it opened.
    `silence_every`: all open connections go silent this often.
    `handle_signals`: SIGUSR1 resets all connections, SIGUSR2 starts a `black_hole_for` black hole,
    SIGHUP silences all open connections.
    `on_ready` is called once the proxy listens (e.g. to print `proxy.address`, write a kubeconfig).
    """
    target_host, target_port = parse_address(target)
    listen_host, listen_port = parse_address(listen, listen=True)
    check_loopback(listen_host, listen)
    _check(reset_every, "reset interval")
    _check(black_hole_every, "black hole interval")
    _check(black_hole_for, "black hole duration", zero_ok=True)
    _check(silence_after, "silence delay", zero_ok=True)
    _check(silence_every, "silence interval")
    if reset_count is not None and reset_count < 0:
        raise BadInput(f"reset count must be >= 0, got {reset_count}")
    if black_hole_then not in ("deliver", "reset"):
        raise BadInput(f"after a black hole: expected 'deliver' or 'reset', got {black_hole_then!r}")

    loop = asyncio.get_running_loop()
    proxy = FaultProxy(
        target_host=target_host, target_port=target_port, listen_host=listen_host, listen_port=listen_port
    )
    try:
        await proxy.start()
    except OSError as exc:
        raise BadInput(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
    holes: asyncio.Task[None] | None = None
    signals: list[signal.Signals] = []
    try:
        if reset_every is not None:
            proxy.schedule_resets(reset_every, count=reset_count)
        if silence_after is not None:
            proxy.silence_after(silence_after)
        if silence_every is not None:
            proxy.schedule_silence(silence_every)
        if black_hole_every is not None:
            holes = loop.create_task(
                _black_holes(proxy, black_hole_every, black_hole_for, black_hole_then),
                name="faultproxy black-hole schedule",
            )
        if handle_signals:
            loop.add_signal_handler(signal.SIGUSR1, proxy.reset_all)
            loop.add_signal_handler(
                signal.SIGUSR2, lambda: proxy.black_hole(black_hole_for, then=black_hole_then)
            )
            loop.add_signal_handler(signal.SIGHUP, proxy.silence_all)
            signals = [signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP]
        if on_ready is not None:
            on_ready(proxy)
        await (stop if stop is not None else asyncio.Event()).wait()
        return proxy.stats
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if holes is not None:
            holes.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await holes
        await proxy.close()
        log.info("fault proxy stopped: %s", proxy.stats)
