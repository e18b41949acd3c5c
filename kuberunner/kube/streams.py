"""Our streaming layer on aiohttp: `pods/attach` (write only), `pods/exec`, and `pods/log` follow.

kubernetes_asyncio hands back raw sockets for these and gets the details wrong (v4 only, no
status check, no idle timeout, a line reader that breaks on long lines), so we drive aiohttp
directly on the client's session (same TLS, fresh bearer header per connection):

- WebSockets offer v5 then v4 and read `ws.protocol`; only v5 can close stdin (`[255, 0]`).
- Every WebSocket has a heartbeat, so a black-holed or silent peer is noticed in about 1.5x
  `heartbeat`; a log follow has an idle bound (`read_timeout`), as HTTP has no ping.
- Every stream takes a new connection (`KubeClient.stream_session`), so a reconnect never lands
  on a pooled connection that is silent too; a lost heartbeat makes the client's REST calls avoid
  the pool for a while (`KubeClient.suspect_pool`).
- The handshake is time-boxed; a refused upgrade raises the Status the server sent.
- A clean end is a close frame; anything else (TCP cut, ping timeout) is `StreamLost`.

What the bytes mean (channels, exit status) is decided in the sans-I/O `channels` module.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Literal

import aiohttp

from kuberunner.kube import channels
from kuberunner.kube.channels import STDERR, STDIN, STDOUT, Frame, StatusCollector
from kuberunner.kube.client import KubeClient, capture_upgrade_rejection, read_bounded
from kuberunner.kube.errors import (
    ApiStatusError,
    ApiUnreachable,
    ExecStartError,
    StreamLost,
    map_errors,
    status_from_body,
    status_from_dict,
)

_PROTOCOLS = (channels.V5, channels.V4)
# Stdin is sent in pieces so one huge write does not become one huge frame.
_STDIN_PIECE = 32 * 1024
_MAX_ERROR_BODY = 65536
_MAX_MESSAGE = 4 * 1024 * 1024

LOG_IDLE_TIMEOUT = 5.0
"""A log follow that sends nothing this long is given up and asked again (`sinceTime` resumes it):
HTTP has no ping, so this is the only way to notice a silent connection under a quiet build."""


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _pod_path(namespace: str, pod: str, sub: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{pod}/{sub}"


async def _connect(
    client: KubeClient,
    path: str,
    query: list[tuple[str, str]],
    *,
    heartbeat: float,
    timeout: float,  # noqa: ASYNC109 - the handshake alone is time-boxed, not the session
) -> aiohttp.ClientWebSocketResponse[Literal[False]]:
    host = client.cfg.host
    headers = await client.auth_headers()
    try:
        async with asyncio.timeout(timeout):
            with capture_upgrade_rejection() as rejected, client.noting_silence(), map_errors(host):
                try:
                    return await client.stream_session.ws_connect(
                        client.url(path),
                        params=query,
                        headers=headers,
                        protocols=_PROTOCOLS,
                        heartbeat=heartbeat,
                        decode_text=False,
                        max_msg_size=_MAX_MESSAGE,
                        timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
                    )
                except aiohttp.WSServerHandshakeError as exc:
                    if exc.status >= 400 or (exc.status != 101 and rejected.body):
                        raise status_from_body(exc.status, rejected.body) from exc
                    raise ApiUnreachable(
                        f"WebSocket handshake with {host} failed: {exc.message}", host=host
                    ) from exc
    except TimeoutError:
        client.suspect_pool()
        raise ApiUnreachable(
            f"WebSocket handshake with {host} timed out after {timeout:g}s", host=host
        ) from None


async def _send_stdin(ws: aiohttp.ClientWebSocketResponse[Literal[False]], data: bytes) -> None:
    for start in range(0, len(data), _STDIN_PIECE):
        await ws.send_bytes(channels.encode(STDIN, data[start : start + _STDIN_PIECE]))


def _lost_reason(ws: aiohttp.ClientWebSocketResponse[Literal[False]]) -> str:
    exc = ws.exception()
    if exc is not None:
        return f"{type(exc).__name__}: {exc}"
    return f"closed without a close frame ({ws.close_code})"


async def attach_write(
    client: KubeClient,
    *,
    namespace: str,
    pod: str,
    container: str,
    data: bytes,
    timeout: float = 20.0,  # noqa: ASYNC109 - the agreed API; each phase is time-boxed inside
    heartbeat: float = 5.0,
) -> None:
    """Write `data` to the container's stdin through `pods/attach` (stdin only), then detach.

    Returns once the server confirmed the session's end: on v5 its Status after our `[255, 0]`; on
    v4 (no half-close) its answer to our close frame, which it sends only after reading our data.
    A `StreamLost` means the data may or may not have reached the container: the caller decides
    whether writing it again is safe. `timeout` bounds the handshake, and then separately the
    write plus its confirmation.
    """
    host = client.cfg.host
    query = [
        ("container", container),
        ("stdin", "true"),
        ("stdout", "false"),
        ("stderr", "false"),
        ("tty", "false"),
    ]
    path = _pod_path(namespace, pod, "attach")
    ws = await _connect(client, path, query, heartbeat=heartbeat, timeout=timeout)
    unsure = f"attach to {namespace}/{pod}: lost after sending {len(data)} bytes (delivery unknown)"
    try:
        async with asyncio.timeout(timeout):
            with client.noting_silence(), map_errors(host, streaming=True):
                await _send_stdin(ws, data)
                if ws.protocol == channels.V5:
                    await ws.send_bytes(channels.close_signal(STDIN))
                    status = StatusCollector()
                    while True:
                        msg = await ws.receive()
                        if msg.type is aiohttp.WSMsgType.BINARY or msg.type is aiohttp.WSMsgType.TEXT:
                            if msg.data and msg.data[0] == channels.ERROR:
                                status.feed(bytes(msg.data[1:]))
                            continue
                        if msg.type is not aiohttp.WSMsgType.CLOSE:
                            raise StreamLost(f"{unsure}: {_lost_reason(ws)}")
                        break
                    if status.received and status.result().exit_code is None:
                        raise _attach_failure(status)
                else:
                    # A v4 server reports a failed attach before the upgrade (the apiserver proxies
                    # to the kubelet first), so here only delivery is left to confirm.
                    await ws.close()
                    if ws.close_code != aiohttp.WSCloseCode.OK:
                        raise StreamLost(f"{unsure}: {_lost_reason(ws)}")
    except TimeoutError:
        client.suspect_pool()
        raise StreamLost(f"{unsure}: no end of session within {timeout:g}s") from None
    finally:
        await _close_quietly(ws)


def _attach_failure(status: StatusCollector) -> ApiStatusError:
    try:
        doc = json.loads(status.payload)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        return status_from_dict(doc, default_code=500)
    return ApiStatusError(500, "InternalError", status.result().error or "attach failed")


async def _close_quietly(ws: aiohttp.ClientWebSocketResponse[Literal[False]]) -> None:
    if ws.closed:
        return
    try:
        async with asyncio.timeout(2.0):
            await ws.close()
    except (TimeoutError, aiohttp.ClientError, OSError):
        pass


class ExecSession:
    """One `pods/exec` WebSocket: write stdin, read stdout/stderr frames, then the exit code.

    There is one reader: `output()` (or `wait()`, which drains what `output()` has not read).
    """

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse[Literal[False]],
        *,
        host: str,
        what: str,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        """`on_lost` is called once if the session ends without a close frame (cut or silent)."""
        self._ws = ws
        self._on_lost = on_lost
        self._host = host
        self._what = what
        self.protocol: str = ws.protocol or ""
        self._status = StatusCollector()
        self._ended: Literal["closed", "lost"] | None = None
        self._lost = ""

    async def __aenter__(self) -> ExecSession:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def write_stdin(self, data: bytes) -> None:
        with map_errors(self._host, streaming=True):
            await _send_stdin(self._ws, data)

    async def close_stdin(self) -> None:
        """End the command's stdin. Only v5 can; on v4 this does nothing (end the input in-band)."""
        if self.protocol == channels.V5:
            with map_errors(self._host, streaming=True):
                await self._ws.send_bytes(channels.close_signal(STDIN))

    async def output(self) -> AsyncIterator[Frame]:
        """STDOUT and STDERR frames as they arrive, bytes untouched; ends when the session ends."""
        while self._ended is None:
            with map_errors(self._host, streaming=True):
                msg = await self._ws.receive()
            if msg.type is aiohttp.WSMsgType.BINARY or msg.type is aiohttp.WSMsgType.TEXT:
                if not msg.data:
                    continue
                frame = channels.decode(bytes(msg.data))
                if frame.channel == channels.ERROR:
                    self._status.feed(frame.data)
                elif frame.channel in (STDOUT, STDERR) and frame.data:
                    yield frame
            elif msg.type is aiohttp.WSMsgType.CLOSE:
                self._ended = "closed"
            else:
                self._ended = "lost"
                self._lost = _lost_reason(self._ws)
                if self._on_lost is not None:
                    self._on_lost()

    async def wait(self) -> int:
        """The command's exit code; output not yet read is discarded.

        `ExecStartError` when the server reported a failure that is not an exit code (the command
        could not start); `StreamLost` when the stream ended without a status.
        """
        async for _ in self.output():
            pass
        result = self._status.result() if self._status.received else None
        if result is not None and result.exit_code is not None:
            return result.exit_code
        if self._ended == "lost":
            raise StreamLost(f"{self._what}: stream lost before the exit status: {self._lost}")
        if result is not None:
            raise ExecStartError(f"{self._what}: {result.error}")
        return 0

    async def close(self) -> None:
        await _close_quietly(self._ws)


async def open_exec(
    client: KubeClient,
    *,
    namespace: str,
    pod: str,
    container: str,
    command: Sequence[str],
    stdin: bool = False,
    heartbeat: float = 5.0,
    timeout: float = 20.0,  # noqa: ASYNC109 - bounds the handshake only; sessions last as long as the command
) -> ExecSession:
    if not command:
        raise ValueError("open_exec: empty command")
    query = [("container", container)]
    query += [("command", arg) for arg in command]
    query += [("stdin", _flag(stdin)), ("stdout", "true"), ("stderr", "true"), ("tty", "false")]
    path = _pod_path(namespace, pod, "exec")
    ws = await _connect(client, path, query, heartbeat=heartbeat, timeout=timeout)
    return ExecSession(
        ws, host=client.cfg.host, what=f"exec in {namespace}/{pod}", on_lost=client.suspect_pool
    )


async def follow_log(
    client: KubeClient,
    *,
    namespace: str,
    pod: str,
    container: str,
    follow: bool = True,
    timestamps: bool = False,
    since_time: str | None = None,
    read_timeout: float = LOG_IDLE_TIMEOUT,
    chunk_limit: int = 65536,
) -> AsyncIterator[bytes]:
    """Raw `pods/log` body chunks (each at most `chunk_limit` bytes) as they arrive.

    A clean end of the body returns: the container ended, or the server gave up (the kubelet's
    idle timeout, a restart), so the caller checks the container before reconnecting.
    `read_timeout` is an idle timeout (`StreamIdle`): the only liveness check an HTTP body has, so
    keep it short and reconnect (resuming with `sinceTime` is cheap); a cut body is `StreamLost`.
    """
    host = client.cfg.host
    query = [("container", container)]
    if follow:
        query.append(("follow", "true"))
    if timestamps:
        query.append(("timestamps", "true"))
    if since_time:
        query.append(("sinceTime", since_time))
    headers = await client.auth_headers()
    headers["Accept-Encoding"] = "identity"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=client.connect_timeout, sock_read=read_timeout)
    with client.noting_silence(), map_errors(host):
        resp = await client.stream_session.get(
            client.url(_pod_path(namespace, pod, "log")), params=query, headers=headers, timeout=timeout
        )
    try:
        if resp.status == 204:
            raise ApiStatusError(204, "NoContent", f"pod {pod} has no logs yet (not scheduled)")
        if resp.status != 200:
            with map_errors(host):
                body = await read_bounded(resp.content, _MAX_ERROR_BODY)
            raise status_from_body(resp.status, body)
        while True:
            with client.noting_silence(), map_errors(host, streaming=True):
                chunk = await resp.content.read(chunk_limit)
            if not chunk:
                return
            yield chunk
    finally:
        # A follow given up half-way (idle, or its reader stopped) must not go back to the pool.
        if resp.content.at_eof():
            resp.release()
        else:
            resp.close()
