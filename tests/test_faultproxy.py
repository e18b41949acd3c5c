"""The fault proxy, on loopback: it relays bytes untouched, and each fault is what a peer would notice.

A reset is a real RST (ECONNRESET on both sides, never a clean EOF); a black hole delivers nothing
and closes nothing, then delivers everything in order (or resets); a refusal is ECONNREFUSED for
new connects only; TLS and kubectl work through it with a rewritten kubeconfig.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from ruamel.yaml import YAML

from kuberunner.cluster import kubeconfig as cluster_kubeconfig
from kuberunner.cluster import tls
from kuberunner.errors import BadInput, FileError
from kuberunner.faultproxy import FaultProxy, ProxyStats, parse_address, rewrite_kubeconfig, run_proxy
from kuberunner.kube import config as kube_config

pytestmark = pytest.mark.timeout(60)

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connect = Callable[[FaultProxy], Awaitable[Stream]]


# -- servers behind the proxy -----------------------------------------------------------------------


@dataclass
class Echo:
    """Echoes every byte; closes after echoing once the client half-closes; records how each
    connection ended ("eof" or the exception's type)."""

    port: int = 0
    received: bytearray = field(default_factory=bytearray)
    endings: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.received += data
                writer.write(data)
                await writer.drain()
            self.endings.append("eof")
        except OSError as exc:
            self.endings.append(type(exc).__name__)
        finally:
            writer.close()


async def ticker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Writes b"0\\n", b"1\\n", ... every 10 ms until the connection breaks."""
    n = 0
    try:
        while True:
            writer.write(b"%d\n" % n)
            await writer.drain()
            n += 1
            await asyncio.sleep(0.01)
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    server_state = Echo()
    server = await asyncio.start_server(server_state.handle, "127.0.0.1", 0)
    server_state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield server_state


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(target_host="127.0.0.1", target_port=echo.port) as p:
        yield p


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Opens client connections to a proxy and closes them all at teardown."""
    writers: list[asyncio.StreamWriter] = []

    async def open_to(p: FaultProxy) -> Stream:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        writers.append(writer)
        return reader, writer

    yield open_to
    for writer in writers:
        writer.close()


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Polls a condition with a deadline: the proxy's counters have no event to await."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def roundtrip(stream: Stream, data: bytes) -> bytes:
    reader, writer = stream
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(5):
        return await reader.readexactly(len(data))


async def read_nothing_for(reader: asyncio.StreamReader, seconds: float) -> None:
    """Asserts that no byte (and no EOF, no error) arrives within `seconds`."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), seconds)


# -- relaying ----------------------------------------------------------------------------------------


async def test_bytes_flow_both_ways_and_are_counted(proxy: FaultProxy, echo: Echo, connect: Connect) -> None:
    stream = await connect(proxy)
    payload = os.urandom(1 << 20)
    assert await roundtrip(stream, b"hello") == b"hello"
    assert await roundtrip(stream, payload) == payload
    assert proxy.address == f"127.0.0.1:{proxy.port}"
    await eventually(lambda: proxy.bytes_down == len(payload) + 5)
    stats = proxy.stats
    assert stats.bytes_up == stats.bytes_down == len(payload) + 5
    assert (stats.connections_open, stats.connections_total, stats.resets) == (1, 1, 0)
    assert bytes(echo.received) == b"hello" + payload


async def test_half_close_is_relayed(proxy: FaultProxy, echo: Echo, connect: Connect) -> None:
    reader, writer = await connect(proxy)
    writer.write(b"last words")
    writer.write_eof()
    async with asyncio.timeout(5):
        assert await reader.read() == b"last words"  # everything, then a clean EOF
    await eventually(lambda: proxy.connections_open == 0)
    assert echo.endings == ["eof"]


async def test_unreachable_target_resets_the_client(connect: Connect) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead_port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    async with FaultProxy(target_host="127.0.0.1", target_port=dead_port) as p:
        reader, _ = await connect(p)
        with pytest.raises(ConnectionResetError):
            async with asyncio.timeout(5):
                await reader.read(1)
        assert p.stats.upstream_failures == 1


# -- reset -------------------------------------------------------------------------------------------


async def test_reset_all_sends_rst_to_both_sides(proxy: FaultProxy, echo: Echo, connect: Connect) -> None:
    streams = [await connect(proxy) for _ in range(2)]
    for stream in streams:
        assert await roundtrip(stream, b"ping") == b"ping"

    assert proxy.reset_all() == 2

    for reader, _ in streams:
        with pytest.raises(ConnectionResetError):  # a reset, not a clean EOF (that would return b"")
            async with asyncio.timeout(5):
                await reader.read(1)
    await eventually(lambda: len(echo.endings) == 2)
    assert echo.endings == ["ConnectionResetError"] * 2
    assert (proxy.stats.resets, proxy.stats.reset_rounds, proxy.connections_open) == (2, 1, 0)
    assert await roundtrip(await connect(proxy), b"again") == b"again"  # the proxy itself lives on


async def test_reset_with_no_connections_counts_a_round(proxy: FaultProxy) -> None:
    assert proxy.reset_all() == 0
    assert (proxy.stats.resets, proxy.stats.reset_rounds) == (0, 1)


async def test_schedule_resets_makes_count_rounds_then_stops(proxy: FaultProxy, connect: Connect) -> None:
    proxy.schedule_resets(0.2, count=3)
    seen_resets = 0
    async with asyncio.timeout(10):
        while proxy.schedule_running or seen_resets < 3:
            reader, _ = stream = await connect(proxy)
            assert await roundtrip(stream, b"x") == b"x"
            with pytest.raises(ConnectionResetError):
                await reader.read(1)
            seen_resets += 1
    assert seen_resets == 3
    assert (proxy.stats.reset_rounds, proxy.stats.resets) == (3, 3)
    survivor = await connect(proxy)
    await read_nothing_for(survivor[0], 0.5)  # a fourth round would reset it well within this
    assert await roundtrip(survivor, b"still here") == b"still here"
    assert proxy.stats.reset_rounds == 3


async def test_stop_schedule(proxy: FaultProxy, connect: Connect) -> None:
    proxy.schedule_resets(0.1)
    await eventually(lambda: proxy.stats.reset_rounds >= 1)
    proxy.stop_schedule()
    rounds = proxy.stats.reset_rounds
    survivor = await connect(proxy)
    await read_nothing_for(survivor[0], 0.4)
    assert proxy.stats.reset_rounds == rounds
    assert not proxy.schedule_running


# -- black hole --------------------------------------------------------------------------------------


async def test_black_hole_holds_bytes_then_delivers_them_in_order(
    proxy: FaultProxy, echo: Echo, connect: Connect
) -> None:
    reader, writer = stream = await connect(proxy)
    assert await roundtrip(stream, b"before") == b"before"
    loop = asyncio.get_running_loop()
    started = loop.time()
    proxy.black_hole(1.0)
    assert proxy.black_holed

    # More than the proxy's own buffers hold, so the kernel's must push back too.
    payload = os.urandom(600_000)
    sending = asyncio.create_task(_send_in_pieces(writer, payload, 7001))
    await read_nothing_for(reader, 0.4)
    assert bytes(echo.received) == b"before"  # nothing reached the server either

    async with asyncio.timeout(5):
        echoed = await reader.readexactly(len(payload))
    assert loop.time() - started >= 0.95
    assert echoed == payload
    await sending
    assert await roundtrip(stream, b"after") == b"after"  # the connection was never closed
    assert proxy.stats.resets == 0
    assert proxy.stats.black_holes == 1


async def _send_in_pieces(writer: asyncio.StreamWriter, data: bytes, piece: int) -> None:
    for i in range(0, len(data), piece):
        writer.write(data[i : i + piece])
        await writer.drain()


async def test_black_hole_stops_the_downstream_direction_too(connect: Connect) -> None:
    server = await asyncio.start_server(ticker, "127.0.0.1", 0)
    async with (
        server,
        FaultProxy(target_host="127.0.0.1", target_port=server.sockets[0].getsockname()[1]) as p,
    ):
        reader, _ = await connect(p)
        async with asyncio.timeout(5):
            assert await reader.readline() == b"0\n"
        loop = asyncio.get_running_loop()
        p.black_hole(0.8)
        hole_end = loop.time() + 0.8
        # Ticks already delivered may still be read; then silence, while the hole lasts.
        received = bytearray(b"0\n")
        silent = False
        while not silent and loop.time() < hole_end:
            try:
                received += await asyncio.wait_for(reader.read(65536), 0.2)
            except TimeoutError:
                silent = True
        assert silent and loop.time() < hole_end
        while loop.time() < hole_end + 0.3:
            async with asyncio.timeout(5):
                received += await reader.read(65536)
        complete = bytes(received[: received.rfind(b"\n") + 1])
        numbers = [int(n) for n in complete.split()]
        assert numbers == list(range(len(numbers)))  # nothing lost, nothing reordered
        assert len(numbers) > 40  # ticks written during the hole (80 of them) arrived afterwards


async def test_black_hole_then_reset_drops_held_bytes(
    proxy: FaultProxy, echo: Echo, connect: Connect
) -> None:
    reader, writer = stream = await connect(proxy)
    assert await roundtrip(stream, b"before") == b"before"
    proxy.black_hole(0.3, then="reset")
    writer.write(b"lost")
    await read_nothing_for(reader, 0.15)
    with pytest.raises(ConnectionResetError):
        async with asyncio.timeout(5):
            await reader.read(1)
    await eventually(lambda: len(echo.endings) == 1)
    assert echo.endings == ["ConnectionResetError"]
    assert bytes(echo.received) == b"before"
    assert (proxy.stats.resets, proxy.black_holed) == (1, False)


async def test_connection_opened_during_black_hole_waits_for_it(
    proxy: FaultProxy, echo: Echo, connect: Connect
) -> None:
    proxy.black_hole(0.4)
    reader, writer = await connect(proxy)
    writer.write(b"early")
    await read_nothing_for(reader, 0.2)
    async with asyncio.timeout(5):
        assert await reader.readexactly(5) == b"early"


async def test_overlapping_black_holes_end_at_the_later_end(proxy: FaultProxy) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    proxy.black_hole(0.5)
    proxy.black_hole(0.1)
    await eventually(lambda: not proxy.black_holed)
    assert loop.time() - started >= 0.45


@pytest.mark.parametrize(
    ("seconds", "then"),
    [(-1.0, "deliver"), (float("nan"), "deliver"), (1.0, "later")],
    ids=["negative", "nan", "then"],
)
async def test_bad_fault_arguments_are_rejected(proxy: FaultProxy, seconds: float, then: str) -> None:
    with pytest.raises(ValueError):
        proxy.black_hole(seconds, then=then)  # type: ignore[arg-type]
    assert not proxy.black_holed


# -- refusal -----------------------------------------------------------------------------------------


async def test_refuse_rejects_new_connects_only_for_the_window(proxy: FaultProxy, connect: Connect) -> None:
    existing = await connect(proxy)
    loop = asyncio.get_running_loop()
    started = loop.time()
    port = proxy.port
    proxy.refuse(0.5)
    assert proxy.refusing
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    assert await roundtrip(existing, b"open ones work") == b"open ones work"

    async with asyncio.timeout(5):
        while True:
            try:
                fresh = await connect(proxy)
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0.02)
    assert loop.time() - started >= 0.45
    assert proxy.port == port and not proxy.refusing
    assert await roundtrip(fresh, b"welcome back") == b"welcome back"
    assert proxy.stats.refusals == 1


# -- close -------------------------------------------------------------------------------------------


async def test_close_ends_connections_and_listening(echo: Echo, connect: Connect) -> None:
    p = FaultProxy(target_host="127.0.0.1", target_port=echo.port)
    await p.start()
    p.schedule_resets(10)
    p.black_hole(10)
    reader, _ = await connect(p)
    await p.close()
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", p.port)
    assert not p.schedule_running
    await p.close()  # idempotent


# -- TLS and real clients ----------------------------------------------------------------------------


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, tls.Credentials]]:
    """An HTTPS server whose self-signed certificate has SAN IP 127.0.0.1."""
    creds = tls.generate()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello over tls")

    async def version(request: web.Request) -> web.Response:
        return web.json_response(
            {"major": "1", "minor": "37", "gitVersion": "v1.37.0-faultproxy", "platform": "linux/amd64"}
        )

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(500):
            await response.write(b"chunk\n")
            await asyncio.sleep(0.01)
        return response

    app = web.Application()
    app.add_routes([web.get("/hello", hello), web.get("/version", version), web.get("/stream", stream)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_context(creds, tmp_path / "tls"))
    await site.start()
    try:
        yield runner.addresses[0][1], creds
    finally:
        await runner.cleanup()


async def test_https_through_the_proxy_and_a_reset_mid_response(
    tls_server: tuple[int, tls.Credentials],
) -> None:
    port, creds = tls_server
    verify = ssl.create_default_context(cadata=creds.cert_pem.decode())  # hostname checked, too
    async with FaultProxy(target_host="127.0.0.1", target_port=port) as p, aiohttp.ClientSession() as http:
        async with http.get(f"https://127.0.0.1:{p.port}/hello", ssl=verify) as response:
            assert (response.status, await response.text()) == (200, "hello over tls")
        async with http.get(f"https://{p.address}/stream", ssl=verify) as response:
            assert await response.content.readline() == b"chunk\n"
            assert p.reset_all() >= 1
            with pytest.raises(aiohttp.ClientError):  # a broken body, never a clean short one
                await response.read()
        assert p.stats.bytes_up > 0 and p.stats.bytes_down > 0


def _kubeconfig(path: Path, *, server: str, ca_pem: bytes) -> Path:
    text = cluster_kubeconfig.render(server=server, ca_pem=ca_pem, token="t0ken")
    text = text.replace("preferences: {}\n", "preferences: {}  # kept\n")
    path.write_text(text)
    return path


async def test_kubectl_through_the_proxy_with_a_rewritten_kubeconfig(
    tls_server: tuple[int, tls.Credentials], tmp_path: Path
) -> None:
    port, creds = tls_server
    src = _kubeconfig(tmp_path / "config", server=f"https://127.0.0.1:{port}", ca_pem=creds.cert_pem)
    kubectl = Path(sys.executable).parent / "kubectl"
    async with FaultProxy(target_host="127.0.0.1", target_port=port) as p:
        rewrite_kubeconfig(src, tmp_path / "proxied", server=p.address)
        process = await asyncio.create_subprocess_exec(
            str(kubectl), "--kubeconfig", str(tmp_path / "proxied"), "version", "-o", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(30):
            out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        assert json.loads(out)["serverVersion"]["gitVersion"] == "v1.37.0-faultproxy"
        assert p.stats.connections_total >= 1


# -- kubeconfig --------------------------------------------------------------------------------------


def test_rewrite_kubeconfig_changes_only_the_current_clusters_port(tmp_path: Path) -> None:
    src = _kubeconfig(tmp_path / "config", server="https://127.0.0.1:6443", ca_pem=b"PEM")
    doc = YAML().load(src.read_text())
    doc["clusters"].append({"name": "other", "cluster": {"server": "https://10.0.0.1:443"}})
    doc["users"][0]["user"]["client-certificate"] = "certs/client.crt"
    with src.open("w") as fh:
        YAML().dump(doc, fh)
    dst = tmp_path / "elsewhere" / "proxied"

    rewrite_kubeconfig(src, dst, server="127.0.0.1:40001")

    out = YAML().load(dst.read_text())
    assert out["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:40001"
    assert "tls-server-name" not in out["clusters"][0]["cluster"]
    assert (
        out["clusters"][0]["cluster"]["certificate-authority-data"]
        == doc["clusters"][0]["cluster"]["certificate-authority-data"]
    )
    assert out["clusters"][1]["cluster"]["server"] == "https://10.0.0.1:443"
    assert out["users"][0]["user"]["token"] == "t0ken"
    assert out["users"][0]["user"]["client-certificate"] == str(tmp_path / "certs" / "client.crt")
    assert "# kept" in dst.read_text()
    assert stat.S_IMODE(dst.stat().st_mode) == 0o600


async def test_rewrite_kubeconfig_of_a_json_kubeconfig_is_read_back(tmp_path: Path) -> None:
    # A JSON kubeconfig (as `kubectl config view --raw -o json` writes) used to come out as wrapped
    # flow-style YAML that no YAML parser reads.
    doc = YAML(typ="safe").load(
        _kubeconfig(tmp_path / "yaml", server="https://10.0.0.7:6443", ca_pem=b"PEM").read_text()
    )
    src = tmp_path / "config.json"
    src.write_text(json.dumps(doc, separators=(",", ":")))
    rewrite_kubeconfig(src, tmp_path / "proxied", server="127.0.0.1:40001")
    cluster = json.loads((tmp_path / "proxied").read_text())["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:40001"
    assert cluster["tls-server-name"] == "10.0.0.7"
    loaded = await kube_config.load_kubeconfig(tmp_path / "proxied")
    assert loaded.host == "https://127.0.0.1:40001"


def test_rewrite_kubeconfig_to_another_host_keeps_tls_name(tmp_path: Path) -> None:
    src = _kubeconfig(tmp_path / "config", server="https://127.0.0.1:6443/prefix", ca_pem=b"PEM")
    rewrite_kubeconfig(src, tmp_path / "proxied", server="127.0.0.2:7000")
    cluster = YAML().load((tmp_path / "proxied").read_text())["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.2:7000/prefix"
    assert cluster["tls-server-name"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("clusters: [\n", 2, "invalid YAML"),
        ("- a list\n", 0, "must be a mapping"),
        ("apiVersion: v1\nclusters: []\n", 1, "no current-context"),
        ("current-context: x\ncontexts: []\nclusters: []\n", 2, "no context named 'x'"),
        (
            "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c}\n"
            "clusters:\n- name: c\n  cluster: {}\n",
            7,
            "has no server",
        ),
    ],
    ids=["yaml", "not-a-mapping", "no-current-context", "no-context", "no-server"],
)
def test_rewrite_kubeconfig_reports_bad_files_as_one_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    src = tmp_path / "config"
    src.write_text(text)
    with pytest.raises(FileError) as caught:
        rewrite_kubeconfig(src, tmp_path / "out", server="127.0.0.1:1")
    assert caught.value.line == line
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_rewrite_kubeconfig_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileError, match="cannot read"):
        rewrite_kubeconfig(tmp_path / "nope", tmp_path / "out", server="127.0.0.1:1")


def test_rewrite_kubeconfig_bad_server(tmp_path: Path) -> None:
    src = _kubeconfig(tmp_path / "config", server="https://127.0.0.1:6443", ca_pem=b"PEM")
    with pytest.raises(BadInput, match="bad address"):
        rewrite_kubeconfig(src, tmp_path / "out", server="127.0.0.1:port")
    assert not (tmp_path / "out").exists()


# -- addresses and run_proxy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8443", ("127.0.0.1", 8443)),
        (":8443", ("127.0.0.1", 8443)),
        ("10.1.2.3:6443", ("10.1.2.3", 6443)),
        ("[::1]:6443", ("::1", 6443)),
        ("https://127.0.0.1:6443", ("127.0.0.1", 6443)),
        ("https://api.example", ("api.example", 443)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


def test_parse_address_port_zero_only_to_listen() -> None:
    assert parse_address("127.0.0.1:0", listen=True) == ("127.0.0.1", 0)
    with pytest.raises(BadInput, match="from 1 to 65535"):
        parse_address("127.0.0.1:0")


@pytest.mark.parametrize(
    "text", ["", "host:", "host:http", "1.2.3.4:70000", "::1:80", "[::1]80", "ftp://x:1"]
)
def test_parse_address_rejects_nonsense(text: str) -> None:
    with pytest.raises(BadInput, match="bad address"):
        parse_address(text)


async def test_run_proxy_resets_on_schedule_until_stopped(echo: Echo, connect: Connect) -> None:
    stop = asyncio.Event()
    ready: asyncio.Future[FaultProxy] = asyncio.get_running_loop().create_future()
    running = asyncio.create_task(
        run_proxy(
            f"127.0.0.1:{echo.port}", "127.0.0.1:0", 0.1, reset_count=2, on_ready=ready.set_result, stop=stop
        )
    )
    p = await asyncio.wait_for(ready, 5)
    assert await roundtrip(await connect(p), b"via run_proxy") == b"via run_proxy"
    await eventually(lambda: p.stats.reset_rounds == 2)
    stop.set()
    stats = await asyncio.wait_for(running, 5)
    assert isinstance(stats, ProxyStats)
    assert (stats.reset_rounds, stats.resets, stats.connections_total) == (2, 1, 1)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", p.port)


@pytest.mark.parametrize(
    "kwargs",
    [{"target": "nowhere"}, {"reset_every": -1.0}, {"reset_every": 0.0}, {"black_hole_then": "maybe"}],
    ids=["target", "negative", "zero", "then"],
)
async def test_run_proxy_rejects_bad_options(kwargs: dict[str, object]) -> None:
    options: dict[str, object] = {"target": "127.0.0.1:1", "listen": "127.0.0.1:0", "reset_every": None}
    options.update(kwargs)
    with pytest.raises(BadInput):
        await run_proxy(**options)  # type: ignore[arg-type]


async def test_run_proxy_faults_on_signals_and_black_hole_schedule(echo: Echo) -> None:
    stop = asyncio.Event()
    ready: asyncio.Future[FaultProxy] = asyncio.get_running_loop().create_future()
    running = asyncio.create_task(
        run_proxy(
            f"127.0.0.1:{echo.port}",
            "0",
            None,
            black_hole_every=0.1,
            black_hole_for=0.05,
            handle_signals=True,
            on_ready=ready.set_result,
            stop=stop,
        )
    )
    p = await asyncio.wait_for(ready, 5)
    await eventually(lambda: p.stats.black_holes >= 2)
    os.kill(os.getpid(), signal.SIGUSR1)
    await eventually(lambda: p.stats.reset_rounds == 1)
    os.kill(os.getpid(), signal.SIGUSR2)
    stop.set()
    stats = await asyncio.wait_for(running, 5)
    assert stats.reset_rounds == 1
    # The handlers are gone with the proxy: the default action of SIGUSR1 would end the process.
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


# -- silence -----------------------------------------------------------------------------------------


async def test_silence_swallows_both_ways_and_closes_nothing(
    proxy: FaultProxy, echo: Echo, connect: Connect
) -> None:
    reader, writer = stream = await connect(proxy)
    assert await roundtrip(stream, b"before") == b"before"
    assert proxy.silence_all() == 1
    writer.write(b"into the void")
    await writer.drain()
    await eventually(lambda: proxy.stats.bytes_swallowed == len(b"into the void"))
    await read_nothing_for(reader, 0.3)  # no byte, no EOF, no reset
    assert bytes(echo.received) == b"before" and echo.endings == []
    assert (proxy.stats.silenced, proxy.stats.silence_rounds, proxy.silent_connections()) == (1, 1, 1)
    # The client giving up tells the server nothing either; and silence is for open connections
    # only: a new one works (its round trip also gives the proxy time to pass on a FIN, if it would).
    writer.close()
    assert await roundtrip(await connect(proxy), b"after") == b"after"
    assert echo.endings == [] and proxy.silent_connections() == 1


async def test_silence_holds_back_what_the_server_sends_too(connect: Connect) -> None:
    server = await asyncio.start_server(ticker, "127.0.0.1", 0)
    async with (
        server,
        FaultProxy(target_host="127.0.0.1", target_port=server.sockets[0].getsockname()[1]) as p,
    ):
        reader, _ = await connect(p)
        assert await asyncio.wait_for(reader.readline(), 5) == b"0\n"
        p.silence_all()
        delivered = p.stats.bytes_down
        await eventually(lambda: p.stats.bytes_swallowed > 30)  # the ticker writes on, into nothing
        assert p.stats.bytes_down == delivered


async def test_silence_after_silences_each_connection_at_its_own_age(
    proxy: FaultProxy, connect: Connect
) -> None:
    old = await connect(proxy)
    assert await roundtrip(old, b"x") == b"x"
    proxy.silence_after(0.3)
    young = await connect(proxy)
    assert await roundtrip(young, b"y") == b"y"  # it is not 0.3 s old yet
    await eventually(lambda: proxy.silent_connections() == 2)
    for reader, writer in (old, young):
        writer.write(b"z")
        await read_nothing_for(reader, 0.2)
    assert proxy.stats.silenced == 2 and proxy.stats.silence_rounds == 0
    proxy.silence_after(None)
    assert await roundtrip(await connect(proxy), b"fresh") == b"fresh"


async def test_schedule_silence_makes_count_rounds(proxy: FaultProxy, connect: Connect) -> None:
    proxy.schedule_silence(0.1, count=2)
    await eventually(lambda: proxy.stats.silence_rounds == 2)
    stream = await connect(proxy)
    assert await roundtrip(stream, b"after the rounds") == b"after the rounds"
    with pytest.raises(ValueError, match="silence interval"):
        proxy.schedule_silence(0)


async def test_until_connections_returns_when_that_many_were_accepted(
    proxy: FaultProxy, connect: Connect
) -> None:
    waiter = asyncio.ensure_future(proxy.until_connections(2))
    await connect(proxy)
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await connect(proxy)
    await asyncio.wait_for(waiter, 5)


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "192.0.2.1:8443", "example.com:0"])
async def test_run_proxy_listens_on_loopback_only(listen: str) -> None:
    with pytest.raises(BadInput, match="only listens on loopback"):
        await run_proxy("127.0.0.1:1", listen, None)


async def test_run_proxy_silences_on_sighup_and_on_schedule(echo: Echo, connect: Connect) -> None:
    stop = asyncio.Event()
    ready: asyncio.Future[FaultProxy] = asyncio.get_running_loop().create_future()
    running = asyncio.create_task(
        run_proxy(
            f"127.0.0.1:{echo.port}",
            "localhost:0",
            None,
            silence_every=0.1,
            handle_signals=True,
            on_ready=ready.set_result,
            stop=stop,
        )
    )
    p = await asyncio.wait_for(ready, 5)
    await eventually(lambda: p.stats.silence_rounds >= 2)
    rounds = p.stats.silence_rounds
    os.kill(os.getpid(), signal.SIGHUP)
    await eventually(lambda: p.stats.silence_rounds > rounds)
    stop.set()
    await asyncio.wait_for(running, 5)
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
