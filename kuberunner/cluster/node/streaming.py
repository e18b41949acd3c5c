"""Server side of pods/attach and pods/exec over WebSocket (k8s-protocol.md §4).

`ChannelCodec` is the sans-I/O framing (channel byte, base64 variants, the v5 CLOSE signal);
`StreamOptions` is the query; `serve_exec` and `serve_attach` drive one session each between the
WebSocket and the runtime (which owns processes and pipes). A Status goes out on channel 3 and then a
close frame 1000, so clients can tell a finished session from a dropped one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from kuberunner.cluster.node import pipes
from kuberunner.cluster.node.logs import parse_bool
from kuberunner.cluster.node.runtime import Container, ExecProcess, Runtime, StartFailed
from kuberunner.cluster.status import bad_request

log = logging.getLogger(__name__)

PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
)
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
MAX_CLIENT_MESSAGE = 4 * 1024 * 1024
"""Largest WebSocket message accepted from a client (aiohttp buffers a whole message)."""


@dataclass(frozen=True, slots=True)
class Data:
    channel: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseChannel:
    channel: int


class ChannelCodec:
    """Framing for one negotiated subprotocol; pure."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.base64 = "base64" in protocol
        self.versioned = protocol.startswith(("v4.", "v5."))
        self.v5 = protocol.startswith("v5.")

    def encode(self, channel: int, payload: bytes) -> bytes | str:
        if self.base64:
            return chr(ord("0") + channel) + base64.b64encode(payload).decode()
        return bytes([channel]) + payload

    def decode(self, message: bytes | str) -> Data | CloseChannel | None:
        if self.base64:
            text = message if isinstance(message, str) else message.decode("latin-1")
            if not text:
                return None
            try:
                payload = base64.b64decode(text[1:])
            except (binascii.Error, ValueError):
                return None
            return Data(ord(text[0]) - ord("0"), payload)
        raw = message.encode() if isinstance(message, str) else message
        if not raw:
            return None
        if self.v5 and raw[0] == CLOSE:
            return CloseChannel(raw[1]) if len(raw) > 1 else None
        return Data(raw[0], raw[1:])


@dataclass(frozen=True, slots=True)
class StreamOptions:
    container: str | None
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool
    command: list[str]


def parse_stream_options(request: web.Request, *, exec_: bool) -> StreamOptions:
    query = request.query

    def flag(name: str) -> bool:
        return parse_bool(name, query[name]) if name in query else False

    stdin, stdout, stderr, tty = flag("stdin"), flag("stdout"), flag("stderr"), flag("tty")
    if tty:
        stderr = False
    if not (stdin or stdout or stderr):
        raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
    command = list(query.getall("command", [])) if exec_ else []
    if exec_ and not command:
        raise bad_request("you must specify at least one command for the container")
    return StreamOptions(query.get("container") or None, stdin, stdout, stderr, tty, command)


def require_upgrade(request: web.Request) -> None:
    if request.method != "GET" or request.headers.get("Upgrade", "").lower() != "websocket":
        raise bad_request("Upgrade request required")
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    if offered and not any(p in PROTOCOLS for p in offered):
        raise bad_request(f"unable to upgrade: no supported protocol in {offered}")


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(command: list[str], code: int) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
        f"[{' '.join(command)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def internal_error(message: str) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


class Session:
    """One upgraded connection: send frames, read client events, finish with a Status."""

    def __init__(self, ws: web.WebSocketResponse, codec: ChannelCodec) -> None:
        self.ws = ws
        self.codec = codec

    async def send(self, channel: int, payload: bytes) -> bool:
        if self.ws.closed:
            return False
        frame = self.codec.encode(channel, payload)
        try:
            if isinstance(frame, str):
                await self.ws.send_str(frame)
            else:
                await self.ws.send_bytes(frame)
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def finish(self, status: dict[str, Any]) -> None:
        if self.codec.versioned:
            await self.send(ERROR, json.dumps(status).encode())
        elif status.get("status") != "Success":
            await self.send(ERROR, str(status.get("message", "")).encode())
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=1000)

    async def client_events(
        self, on_data: Callable[[bytes], Awaitable[None]], on_stdin_eof: Callable[[], Awaitable[None]]
    ) -> None:
        """Feed stdin until the client closes it (v5 CLOSE) or goes away; then call `on_stdin_eof`."""
        eof_sent = False
        async for message in self.ws:
            if message.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            event = self.codec.decode(message.data)
            if isinstance(event, CloseChannel) and event.channel == STDIN and not eof_sent:
                eof_sent = True
                await on_stdin_eof()
            elif isinstance(event, Data) and event.channel == STDIN and not eof_sent:
                await on_data(event.payload)
        if not eof_sent:
            await on_stdin_eof()


async def open_session(request: web.Request, options: StreamOptions) -> Session:
    ws = web.WebSocketResponse(protocols=PROTOCOLS, autoping=True, max_msg_size=MAX_CLIENT_MESSAGE)
    await ws.prepare(request)
    session = Session(ws, ChannelCodec(ws.ws_protocol or "channel.k8s.io"))
    first = STDOUT if options.stdout else STDERR if options.stderr else ERROR
    await session.send(first, b"")
    return session


async def _copy_out(session: Session, fd: int | None, channel: int, wanted: bool) -> None:
    if fd is None:
        return
    while chunk := await pipes.read_some(fd):
        if wanted and not await session.send(channel, chunk):
            return


async def serve_exec(
    request: web.Request,
    options: StreamOptions,
    runtime: Runtime,
    container: Container | None,
    not_running: str,
) -> web.StreamResponse:
    session = await open_session(request, options)
    if options.tty:
        await session.finish(internal_error("error executing command in container: tty is not supported"))
        return session.ws
    if container is None or not container.running:
        await session.finish(internal_error(f"error executing command in container: {not_running}"))
        return session.ws
    try:
        process = await runtime.exec(container, options.command, stdin=options.stdin)
    except StartFailed as exc:
        await session.finish(internal_error(f"error executing command in container: {exc}"))
        return session.ws
    await _run_exec(session, options, process)
    return session.ws


async def _run_exec(session: Session, options: StreamOptions, process: ExecProcess) -> None:
    async def feed(data: bytes) -> None:
        if process.stdin is not None:
            try:
                await pipes.write_all(process.stdin, data)
            except OSError:
                process.close_stdin()

    async def stdin_eof() -> None:
        process.close_stdin()

    reader = asyncio.ensure_future(session.client_events(feed, stdin_eof))
    outputs = asyncio.gather(
        _copy_out(session, process.stdout, STDOUT, options.stdout),
        _copy_out(session, process.stderr, STDERR, options.stderr),
    )
    try:
        await outputs
        code = await process.wait()
    except BaseException:
        outputs.cancel()
        reader.cancel()
        await process.close()
        raise
    for fd in (process.stdout, process.stderr):
        pipes.close_quietly(fd)
    process.close_stdin()
    status = success_status() if code == 0 else exit_status(options.command, code)
    await session.finish(status)
    reader.cancel()


async def serve_attach(
    request: web.Request,
    options: StreamOptions,
    container: Container | None,
    not_running: str,
    *,
    accepts_stdin: bool,
    stdin_once: bool,
    tty: bool,
) -> web.StreamResponse:
    session = await open_session(request, options)
    if container is None or not container.running:
        await session.finish(internal_error(f"error attaching to container: {not_running}"))
        return session.ws
    sink = container.attach() if (options.stdout or options.stderr) else None
    client_gone = asyncio.Event()
    keep_streaming = stdin_once and not tty and options.stdin

    async def feed(data: bytes) -> None:
        if accepts_stdin and options.stdin:
            await container.write_stdin(data)

    async def stdin_eof() -> None:
        if keep_streaming and accepts_stdin:
            container.close_stdin()
        else:
            client_gone.set()

    async def relay() -> None:
        if sink is None:
            await asyncio.shield(container.exited)
            return
        while True:
            item = await sink.queue.get()
            if item is None:
                return
            stream, chunk = item
            wanted = options.stdout if stream == "stdout" else options.stderr
            if wanted and not await session.send(STDOUT if stream == "stdout" else STDERR, chunk):
                return
            if sink.detached and sink.queue.empty():
                return

    reader = asyncio.ensure_future(session.client_events(feed, stdin_eof))
    output = asyncio.ensure_future(relay())
    ended = asyncio.ensure_future(client_gone.wait())
    try:
        await asyncio.wait({output, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (output, ended):
            task.cancel()
        if sink is not None:
            container.detach(sink)
    await session.finish(success_status())
    reader.cancel()
    return session.ws
