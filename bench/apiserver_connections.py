"""Idle connections against the API server: what N clients that never send a request cost it.

A `kuberunner cluster` process is started; this process opens N TLS connections to it (loopback
only, at most `--concurrency` handshakes at a time) and sends nothing. Measured from /proc of the
cluster process: RSS when idle (the baseline), with the connections open, and after they are gone,
plus how many connections the server accepted (handshake completed) and refused, how many it closed
by itself and when. An authenticated client, connected before the flood, lists pods during it.

Every wait is bounded: opening by `--open-timeout` per connection, waiting for the server to close
the idle connections by `--close-wait`, after which this process closes what is left.

    .venv/bin/python bench/apiserver_connections.py [--connections 2000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ClusterProcess, proc_sample, set_tls_read_buffer, table, write_json

from kuberunner.kube import config as kube_config

MAX_CONNECTIONS = 20_000
PODS = "/api/v1/namespaces/default/pods"


@dataclass
class Flood:
    accepted: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = field(default_factory=list)
    refused: int = 0
    open_seconds: float = 0.0


def loose_context() -> ssl.SSLContext:
    # The idle clients never send anything that matters: no need to verify the server.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def open_idle(host: str, port: int, *, count: int, concurrency: int, per_connection: float) -> Flood:
    flood = Flood()
    context = loose_context()
    gate = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    async def one() -> None:
        async with gate:
            try:
                async with asyncio.timeout(per_connection):
                    reader, writer = await asyncio.open_connection(host, port, ssl=context)
            except (OSError, TimeoutError):
                flood.refused += 1
                return
            flood.accepted.append((reader, writer, loop.time()))

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    flood.open_seconds = time.monotonic() - started
    return flood


async def closed_by_server(flood: Flood, *, within: float) -> tuple[int, float | None]:
    """How many accepted connections the server closed within `within` s, and the longest
    accept-to-close time among them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    lifetimes: list[float] = []

    async def wait(reader: asyncio.StreamReader, opened: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                while await reader.read(65536):
                    pass
        except TimeoutError:
            return
        except (OSError, ssl.SSLError):
            pass
        lifetimes.append(loop.time() - opened)

    await asyncio.gather(*(wait(reader, opened) for reader, _, opened in flood.accepted))
    return len(lifetimes), max(lifetimes) if lifetimes else None


async def list_pods(session: aiohttp.ClientSession, url: str) -> str:
    started = time.monotonic()
    try:
        async with asyncio.timeout(10), session.get(url + PODS) as resp:
            await resp.read()
            return f"{resp.status} in {(time.monotonic() - started) * 1000:.0f} ms"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return f"failed: {type(exc).__name__}"


def rss_mb(pid: int) -> float:
    return proc_sample(pid).rss_kb / 1024


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # Keep this process's own TLS buffers small: it holds the client end of every connection.
    set_tls_read_buffer(16 * 1024)
    with ClusterProcess() as cluster:
        cfg = await kube_config.load_kubeconfig(cluster.kubeconfig, None)
        host, _, port_text = cfg.host.removeprefix("https://").rpartition(":")
        port = int(port_text)
        verified = ssl.create_default_context(cadata=(cfg.ca_data or b"").decode())
        headers = {"Authorization": f"Bearer {cfg.token}"}
        connector = aiohttp.TCPConnector(ssl=verified, limit=1, keepalive_timeout=600)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            before_flood = await list_pods(session, cfg.host)
            await asyncio.sleep(1.0)  # let start-up garbage settle before the baseline
            idle = rss_mb(cluster.pid)
            flood = await open_idle(
                host,
                port,
                count=args.connections,
                concurrency=args.concurrency,
                per_connection=args.open_timeout,
            )
            held = rss_mb(cluster.pid)
            during_flood = await list_pods(session, cfg.host)
            fresh_connector = aiohttp.TCPConnector(ssl=verified, limit=1)
            async with aiohttp.ClientSession(connector=fresh_connector, headers=headers) as fresh:
                fresh_during_flood = await list_pods(fresh, cfg.host)
            closed, longest = await closed_by_server(flood, within=args.close_wait)
            for _, writer, _ in flood.accepted:
                writer.close()
            await asyncio.sleep(2.0)  # the server sees the closes and frees their memory
            after = rss_mb(cluster.pid)
            after_flood = await list_pods(session, cfg.host)
    return {
        "connections": args.connections,
        "accepted": len(flood.accepted),
        "refused": flood.refused,
        "open_seconds": round(flood.open_seconds, 2),
        "closed_by_server": closed,
        "longest_idle_seconds": None if longest is None else round(longest, 1),
        "rss_mb": {"idle": round(idle, 1), "held": round(held, 1), "after": round(after, 1)},
        "authenticated_keepalive": {"before": before_flood, "during": during_flood, "after": after_flood},
        "authenticated_new_connection_during": fresh_during_flood,
    }


def report(result: dict[str, Any]) -> str:
    rss = result["rss_mb"]
    idle = rss["idle"]
    accepted = max(result["accepted"], 1)
    rows = [
        ["idle (baseline)", 0, f"{idle:.1f}", "0.0", "-"],
        [
            f"{result['connections']} idle clients",
            result["accepted"],
            f"{rss['held']:.1f}",
            f"{rss['held'] - idle:+.1f}",
            f"{(rss['held'] - idle) * 1024 / accepted:.0f}",
        ],
        ["after they closed", 0, f"{rss['after']:.1f}", f"{rss['after'] - idle:+.1f}", "-"],
    ]
    lines = [
        table(["server state", "connections held", "RSS MB", "vs idle MB", "KiB per held"], rows),
        "",
        f"accepted {result['accepted']}, refused {result['refused']} "
        f"(opened in {result['open_seconds']} s); closed by the server: {result['closed_by_server']}, "
        f"the longest after {result['longest_idle_seconds']} s",
        "authenticated client on a keep-alive connection: "
        + ", ".join(f"{k} {v}" for k, v in result["authenticated_keepalive"].items()),
        f"authenticated client on a new connection during the flood: "
        f"{result['authenticated_new_connection_during']}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64, help="handshakes in flight at once")
    parser.add_argument("--open-timeout", type=float, default=10.0, help="seconds per connection")
    parser.add_argument("--close-wait", type=float, default=20.0, help="seconds to wait for server closes")
    args = parser.parse_args()
    if not 1 <= args.connections <= MAX_CONNECTIONS:
        parser.error(f"--connections must be 1..{MAX_CONNECTIONS}")
    result = asyncio.run(run(args))
    print(report(result))
    print(f"results: {write_json('apiserver_connections', result)}")


if __name__ == "__main__":
    main()
