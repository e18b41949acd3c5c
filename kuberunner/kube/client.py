"""One client for one API server: typed REST with raw JSON, pod watching, and the plumbing
(TLS, per-connection bearer headers, which connections to use) that `streams.py` reuses.

Requests go through our own aiohttp sessions so that every one is bounded: a total timeout per REST
call, a size bound on every body and watch line, an idle bound on every watch. The bearer token is
ours too (`BearerToken`): kubernetes_asyncio was used for that alone, and importing it loads every
API and model module, about a third of a second of every `kuberunner` start (bench/start_latency.py).

Connections that go silent (half-open: established, but every byte is dropped) are the hard case:
a pooled keep-alive connection may be one. So there are two sessions with the same TLS context: the
pool, and one that opens a new connection for every request. Streams (watch, attach, exec, log)
always take a new connection: they hold it for long, so a handshake is cheap next to their life,
and a reconnect after a silence never lands on another silent one. REST calls share the pool,
except after a sign of silence (a call timed out, a WebSocket missed its heartbeat): then the
client is "suspicious" and sends them over new connections until every connection idle in the pool
at that moment has been dropped by its keep-alive expiry. Every socket also gets TCP keepalive
(`sockets.py`).
"""

from __future__ import annotations

import asyncio.sslproto
import json
import ssl
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import aclosing, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from kuberunner.kube.config import ClusterConfig
from kuberunner.kube.errors import (
    ApiUnreachable,
    BodyTooLarge,
    KubeConfigError,
    KubeError,
    StreamIdle,
    StreamLost,
    map_errors,
    status_from_body,
    status_from_dict,
)
from kuberunner.kube.loglines import LineSplitter, LineTooLong
from kuberunner.kube.sockets import DEFAULT_KEEPALIVE, Keepalive, keepalive_factory
from kuberunner.tcp_keepalive import ABORT_CLOSED_TLS

_MAX_ERROR_BODY = 65536

MAX_BODY = 32 << 20
"""A REST answer larger than this is refused: a pod or secret is at most a few MiB (etcd's limit is
1.5 MiB per object); only a list could be larger, and ours are filtered by label."""

KEEPALIVE_TIMEOUT = 10.0
"""Seconds a pooled connection may sit idle before aiohttp closes it; it also sets how long the
client stays suspicious after a silence (`KubeClient.suspect_pool`)."""


def build_ssl_context(cfg: ClusterConfig) -> ssl.SSLContext:
    """The TLS settings of `cfg` as one context, shared by REST and stream connections."""
    try:
        if cfg.ca_file or cfg.ca_data:
            cadata = cfg.ca_data.decode("ascii", errors="replace") if cfg.ca_data else None
            ctx = ssl.create_default_context(cafile=cfg.ca_file, cadata=cadata)
        else:
            ctx = ssl.create_default_context()
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise KubeConfigError(f"cluster CA ({cfg.ca_file or 'certificate-authority-data'}): {exc}") from None
    if not cfg.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        if cfg.cert_data or cfg.key_data:
            # ssl only loads key material from files: write it to a private directory just long
            # enough to load it.
            with tempfile.TemporaryDirectory(prefix="kuberunner-tls-") as tmp:
                cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
                cert.write_bytes(cfg.cert_data or b"")
                key.touch(mode=0o600)
                key.write_bytes(cfg.key_data or b"")
                ctx.load_cert_chain(str(cert), str(key))
        elif cfg.cert_file:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    except (ssl.SSLError, OSError) as exc:
        raise KubeConfigError(f"client certificate/key ({cfg.cert_file or 'inline data'}): {exc}") from None
    return ctx


@dataclass
class UpgradeRejection:
    """The body of a refused WebSocket upgrade (aiohttp discards it; the Status is in there)."""

    status: int = 0
    body: bytes = b""


_upgrade_rejection: ContextVar[UpgradeRejection | None] = ContextVar("upgrade_rejection", default=None)


@contextmanager
def capture_upgrade_rejection() -> Iterator[UpgradeRejection]:
    """While active in this task, a non-101 answer to a WebSocket upgrade has its body kept."""
    holder = UpgradeRejection()
    token = _upgrade_rejection.set(holder)
    try:
        yield holder
    finally:
        _upgrade_rejection.reset(token)


async def _keep_rejected_upgrade_body(
    session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
) -> None:
    holder = _upgrade_rejection.get()
    resp = params.response
    if holder is None or resp.status == 101:
        return
    if params.headers.get("Upgrade", "").lower() != "websocket":
        return
    holder.status = resp.status
    holder.body = await read_bounded(resp.content, _MAX_ERROR_BODY)


async def read_bounded(content: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to `limit` bytes of a body (an error body is for a message, not worth unbounded memory)."""
    body = bytearray()
    while len(body) < limit:
        chunk = await content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


async def read_whole(content: aiohttp.StreamReader, *, max_body: int) -> bytes:
    """The whole body, or `BodyTooLarge` once it passes `max_body` bytes (read no further)."""
    body = await read_bounded(content, max_body + 1)
    if len(body) > max_body:
        raise BodyTooLarge(f"the API server sent a body larger than {max_body} bytes")
    return body


def _read_token_file(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


class BearerToken:
    """The `Authorization` header: a fixed token, or a token file read again for every connection
    (projected service-account tokens rotate); a file that cannot be read keeps the last token."""

    def __init__(self, token: str | None, token_file: str | None) -> None:
        self._file = token_file
        self._token = (_read_token_file(token_file) if token_file else None) or token

    def headers(self) -> dict[str, str]:
        if self._file:
            self._token = _read_token_file(self._file) or self._token
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}


TLS_READ_BUFFER = 64 * 1024
"""asyncio gives every TLS connection a 256 KiB read buffer; a runner holds about 3.5 streams per job,
so at 200 jobs that alone was 170 MB (bench/concurrency.py). 64 KiB halves the runner's peak there
for a few percent more CPU on bulk streams."""


def limit_tls_read_buffers(size: int) -> None:
    """Process-wide: asyncio has no per-connection knob, so set the class attribute it reads."""
    asyncio.sslproto.SSLProtocol.max_size = size


class KubeClient:
    """REST calls take and return raw Kubernetes JSON (dicts); errors are `kube.errors` types."""

    def __init__(
        self,
        cfg: ClusterConfig,
        bearer: BearerToken,
        session: aiohttp.ClientSession,
        *,
        request_timeout: float,
        connect_timeout: float,
        fresh_session: aiohttp.ClientSession | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        self._cfg = cfg
        self._bearer = bearer
        self._session = session
        self._fresh = fresh_session
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._max_body = max_body
        self._suspect_until = 0.0
        self.suspicions = 0
        """How often a silence made the client switch to new connections (for tests and benchmarks)."""

    @classmethod
    async def open(
        cls,
        cfg: ClusterConfig,
        *,
        pool_size: int = 300,
        request_timeout: float = 15.0,
        connect_timeout: float = 10.0,
        tls_read_buffer: int = TLS_READ_BUFFER,
        keepalive: Keepalive = DEFAULT_KEEPALIVE,
        max_body: int = MAX_BODY,
    ) -> KubeClient:
        """`pool_size` caps connections: each attach, log follow and watch holds one for its life,
        so size it above 3x the concurrent jobs or REST calls queue behind streams.
        `request_timeout` bounds each REST call as a whole (callers retry on a new connection);
        `max_body` bounds each REST answer."""
        limit_tls_read_buffers(tls_read_buffer)
        ssl_ctx = build_ssl_context(cfg) if cfg.host.startswith("https") else None
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(_keep_rejected_upgrade_body)
        sessions = [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=pool_size,
                    ssl=ssl_ctx if ssl_ctx is not None else True,
                    force_close=fresh,
                    keepalive_timeout=None if fresh else KEEPALIVE_TIMEOUT,
                    enable_cleanup_closed=ABORT_CLOSED_TLS,
                    socket_factory=keepalive_factory(keepalive),
                ),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
                trust_env=False,
                read_bufsize=2**21,
                trace_configs=[trace],
            )
            for fresh in (False, True)
        ]
        return cls(
            cfg,
            BearerToken(cfg.token, cfg.token_file),
            sessions[0],
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            fresh_session=sessions[1],
            max_body=max_body,
        )

    async def close(self) -> None:
        await self._session.close()
        if self._fresh is not None:
            await self._fresh.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def cfg(self) -> ClusterConfig:
        return self._cfg

    @property
    def namespace(self) -> str:
        return self._cfg.namespace

    # --- plumbing shared with streams.py -------------------------------------------------------

    @property
    def stream_session(self) -> aiohttp.ClientSession:
        """The session for streams: a new connection each, never a pooled one."""
        return self._fresh if self._fresh is not None else self._session

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session for the next REST request: the pool, or new connections while suspicious."""
        if self._fresh is not None and asyncio.get_running_loop().time() < self._suspect_until:
            return self._fresh
        return self._session

    def suspect_pool(self) -> None:
        """A connection went silent: pooled ones may be silent too, so use new connections until
        every connection idle in the pool now has expired (aiohttp checks expiry about once per
        keep-alive period, hence twice that)."""
        now = asyncio.get_running_loop().time()
        if now >= self._suspect_until:
            self.suspicions += 1
        self._suspect_until = now + 2 * KEEPALIVE_TIMEOUT + 1.0

    @contextmanager
    def noting_silence(self) -> Iterator[None]:
        """Errors that may mean a silent connection make the client suspicious, then pass on.
        An idle stream is not one of them: a quiet build is not a dead connection."""
        try:
            yield
        except StreamIdle:
            raise
        except (ApiUnreachable, StreamLost):
            self.suspect_pool()
            raise

    @property
    def connect_timeout(self) -> float:
        return self._connect_timeout

    def url(self, path: str) -> str:
        return self._cfg.host + path

    async def auth_headers(self) -> dict[str, str]:
        """Fresh per connection: a rotated service-account token is picked up by the next stream."""
        return self._bearer.headers()

    # --- REST ----------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,  # noqa: ASYNC109 - a bound on one request, passed to aiohttp
        max_body: int | None = None,
    ) -> Any:
        """One request, bounded as a whole by `timeout` (default: the client's) and its answer by
        `max_body` bytes. A timed-out connection is closed, never pooled again."""
        total = self._request_timeout if timeout is None else timeout
        limit = self._max_body if max_body is None else max_body
        headers = await self.auth_headers()
        headers.update({"Content-Type": content_type, "Accept": "application/json"})
        data = json.dumps(dict(body)).encode() if body is not None else None
        with self.noting_silence(), map_errors(self._cfg.host):
            async with asyncio.timeout(total):
                async with self.session.request(
                    method,
                    self.url(path),
                    params=query or [],
                    headers=headers,
                    data=data,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
                ) as resp:
                    status = resp.status
                    if 200 <= status < 300:
                        answer = await read_whole(resp.content, max_body=limit)
                    else:
                        answer = await read_bounded(resp.content, _MAX_ERROR_BODY)
        if not 200 <= status < 300:
            raise status_from_body(status, answer)
        try:
            return json.loads(answer) if answer else {}
        except ValueError:
            raise KubeError(f"{method} {path}: the API server sent invalid JSON") from None

    @staticmethod
    def _path(namespace: str, resource: str, name: str | None = None) -> str:
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/{resource}"
        return path if name is None else f"{path}/{quote(name, safe='')}"

    async def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return _as_dict(await self._call("POST", self._path(namespace, "pods"), body=body))

    async def get_pod(
        self,
        namespace: str,
        name: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a bound on one request, passed to _call
    ) -> dict[str, Any]:
        """`timeout` overrides the client's request timeout (a liveness probe wants a short one)."""
        return _as_dict(await self._call("GET", self._path(namespace, "pods", name), timeout=timeout))

    async def list_pods(self, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else None
        doc = _as_dict(await self._call("GET", self._path(namespace, "pods"), query=query))
        items = doc.get("items")
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    async def delete_pod(self, namespace: str, name: str, *, grace_seconds: int | None = None) -> None:
        query = [("gracePeriodSeconds", str(grace_seconds))] if grace_seconds is not None else None
        await self._call("DELETE", self._path(namespace, "pods", name), query=query)

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return _as_dict(await self._call("POST", self._path(namespace, "secrets"), body=body))

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        return _as_dict(await self._call("GET", self._path(namespace, "secrets", name)))

    async def patch_secret(self, namespace: str, name: str, merge_patch: dict[str, Any]) -> dict[str, Any]:
        return _as_dict(
            await self._call(
                "PATCH",
                self._path(namespace, "secrets", name),
                body=merge_patch,
                content_type="application/merge-patch+json",
            )
        )

    async def delete_secret(self, namespace: str, name: str) -> None:
        await self._call("DELETE", self._path(namespace, "secrets", name))

    # --- watch ---------------------------------------------------------------------------------

    async def watch_pod(
        self,
        namespace: str,
        name: str,
        *,
        resource_version: str | None = None,
        timeout_seconds: int | None = 290,
        idle_timeout: float = 330.0,
        max_event: int = 16 << 20,
        bookmarks: bool = False,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Events `(type, pod)` for one pod, from `resource_version` (None: the current state first).

        Ends after a DELETED event, or when the stream ends cleanly: the server's `timeout_seconds`
        passed, or nothing arrived for `idle_timeout` (a quiet pod and a silent connection look
        alike; `podwatch` tells them apart with a GET beside the watch). The caller then re-watches
        from the last `metadata.resourceVersion` it saw. With `bookmarks` the server is asked for
        BOOKMARK events, and they are yielded (their object carries only a resourceVersion). An
        ERROR event raises its Status (410 `Expired`: re-list with `get_pod`); a cut stream raises
        `StreamLost`; an event over `max_event` bytes raises `BodyTooLarge`. A watch abandoned by
        its caller closes its connection: a half-read one must never go back to the pool.
        """
        watch = self.watch_objects(
            namespace,
            "pods",
            f"metadata.name={name}",
            what=f"pod {name}",
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
            idle_timeout=idle_timeout,
            max_event=max_event,
            bookmarks=bookmarks,
        )
        async with aclosing(watch):  # its connection is closed as soon as we stop
            async for event in watch:
                yield event
                if event[0] == "DELETED":
                    return

    async def watch_events(
        self, namespace: str, involved: str, *, max_event: int = 1 << 20
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """core/v1 Events `(type, event)` about the object named `involved`, those already recorded
        first; ends as `watch_pod` does when the stream ends."""
        watch = self.watch_objects(
            namespace,
            "events",
            f"involvedObject.name={involved}",
            what=f"events of {involved}",
            max_event=max_event,
        )
        async with aclosing(watch):
            async for event in watch:
                yield event

    async def watch_objects(
        self,
        namespace: str,
        resource: str,
        field_selector: str,
        *,
        what: str,
        resource_version: str | None = None,
        timeout_seconds: int | None = 290,
        idle_timeout: float = 330.0,
        max_event: int = 16 << 20,
        bookmarks: bool = False,
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """The watch behind `watch_pod` and `watch_events`, of `resource` objects `field_selector` picks."""
        query = [("fieldSelector", field_selector), ("watch", "true")]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if timeout_seconds is not None:
            query.append(("timeoutSeconds", str(timeout_seconds)))
        if bookmarks:
            query.append(("allowWatchBookmarks", "true"))
        headers = await self.auth_headers()
        headers["Accept"] = "application/json"
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout, sock_read=idle_timeout
        )
        with self.noting_silence(), map_errors(self._cfg.host):
            resp = await self.stream_session.get(
                self.url(self._path(namespace, resource)), params=query, headers=headers, timeout=timeout
            )
        try:
            if resp.status != 200:
                with map_errors(self._cfg.host):
                    body = await read_bounded(resp.content, _MAX_ERROR_BODY)
                raise status_from_body(resp.status, body)
            splitter = LineSplitter(max_line=max_event)
            while True:
                try:
                    with self.noting_silence(), map_errors(self._cfg.host, streaming=True):
                        chunk = await resp.content.read(65536)
                except StreamIdle:
                    return
                if not chunk:
                    return
                try:
                    lines = splitter.feed(chunk)
                except LineTooLong as exc:
                    raise BodyTooLarge(f"watch of {what}: an event {exc}") from None
                for line in lines:
                    if not line.strip():
                        continue
                    kind, obj = _parse_event(line)
                    if kind == "ERROR":
                        raise status_from_dict(obj, default_code=500)
                    if kind == "BOOKMARK" and not bookmarks:
                        continue
                    yield kind, obj
        finally:
            # Closing (not releasing) drops the connection unless the body was read to its end.
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()


def _parse_event(line: bytes) -> tuple[str, dict[str, Any]]:
    try:
        doc = json.loads(line)
    except ValueError:
        raise KubeError("watch: the API server sent an event that is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("object"), dict):
        raise KubeError("watch: the API server sent an event without an object")
    return str(doc.get("type", "")), doc["object"]


def _as_dict(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise KubeError("the API server sent JSON that is not an object")
    return doc
