"""A small fake kube-apiserver on loopback, just enough for `kuberunner.kube`'s tests.

It speaks real HTTP and WebSocket (optionally TLS with a client-certificate check), answers errors
with `Status` bodies, and records what clients send: bearer headers, offered subprotocols, stdin
bytes. Fault modes: v4-only negotiation, a cut TCP connection, a peer that stops answering pings,
a log body cut mid-way or left hanging.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import WSMsgType, web

from .certs import Pki

V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
SUCCESS = {"metadata": {}, "status": "Success"}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def status_response(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(status(code, reason, message), status=code)


def exit_status(code: int) -> dict[str, Any]:
    if code == 0:
        return SUCCESS
    # The ExitCode cause deliberately is not the first cause: clients must search for it.
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "Other", "message": "noise"},
                                   {"reason": "ExitCode", "message": str(code)}]}}


@dataclass
class LogScript:
    chunks: list[bytes] = field(default_factory=list)
    then: Literal["end", "cut", "hang"] = "end"
    waiting: str | None = None  # a container reason: answer 400 "waiting to start"


@dataclass
class WatchScript:
    events: list[dict[str, Any]] = field(default_factory=list)
    then: Literal["end", "cut", "hang"] = "end"


class FakeApi:
    def __init__(self, *, token: str | None = "s3cret", pki: Pki | None = None,
                 require_client_cert: bool = False, v4_only: bool = False) -> None:
        self.token = token
        self.pki = pki
        self.require_client_cert = require_client_cert
        self.v4_only = v4_only
        self.forbid = False
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs: dict[str, LogScript] = {}
        self.watch = WatchScript()
        self.stdin: dict[str, bytearray] = {}
        self.attach_messages: list[bytes] = []
        self.offered: list[str] = []
        self.negotiated: list[str] = []
        self.auth_seen: list[tuple[str, str | None]] = []
        self.client_certs: list[str] = []
        self.requests: list[tuple[str, str, dict[str, str], str]] = []  # method, path, query, ctype
        self.release = asyncio.Event()  # lets hanging handlers finish at shutdown
        self._rv = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        base = "/api/v1/namespaces/{ns}"
        app.router.add_route("*", base + "/{kind:pods|secrets}", self.collection)
        app.router.add_route("*", base + "/{kind:pods|secrets}/{name}", self.item)
        app.router.add_get(base + "/pods/{name}/attach", self.attach)
        app.router.add_get(base + "/pods/{name}/exec", self.exec)
        app.router.add_get(base + "/pods/{name}/log", self.log)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        ctx = None
        if self.pki is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.pki.server_cert, self.pki.server_key)
            if self.require_client_cert:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(cadata=self.pki.ca_pem.decode())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"{'https' if ctx else 'http'}://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def add_pod(self, name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
        pod = {"metadata": {"name": name, "namespace": namespace, "labels": dict(labels)}}
        self._stamp(pod)
        self.pods[(namespace, name)] = pod
        return pod

    # --- helpers -----------------------------------------------------------------------------

    def _stamp(self, obj: dict[str, Any]) -> None:
        self._rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._rv)

    def _check(self, request: web.Request, kind: str) -> web.Response | None:
        """Authentication and authorisation, as the apiserver does them before anything else."""
        header = request.headers.get("Authorization")
        self.auth_seen.append((kind, header))
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if peer:
            self.client_certs.append(dict(x[0] for x in peer["subject"])["commonName"])
        if self.token is not None and header != f"Bearer {self.token}":
            return status_response(401, "Unauthorized", "Unauthorized")
        if self.forbid:
            return status_response(403, "Forbidden", f'{kind} is forbidden: User "runner" cannot')
        return None

    def _pod_or_404(self, request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        ns, name = request.match_info["ns"], request.match_info["name"]
        pod = self.pods.get((ns, name))
        if pod is None:
            return None, status_response(404, "NotFound", f'pods "{name}" not found')
        return pod, None

    # --- REST --------------------------------------------------------------------------------

    async def collection(self, request: web.Request) -> web.StreamResponse:
        ns, kind = request.match_info["ns"], request.match_info["kind"]
        self.requests.append((request.method, request.path, dict(request.query), request.content_type))
        if (denied := self._check(request, "rest")) is not None:
            return denied
        store = self.pods if kind == "pods" else self.secrets
        if request.method == "POST":
            body = await request.json()
            name = body["metadata"]["name"]
            if (ns, name) in store:
                return status_response(409, "AlreadyExists", f'{kind} "{name}" already exists')
            body["metadata"]["namespace"] = ns
            self._stamp(body)
            store[(ns, name)] = body
            return web.json_response(body, status=201)
        if request.method != "GET":
            return status_response(405, "MethodNotAllowed", "method not allowed")
        if request.query.get("watch") == "true":
            return await self._watch(request)
        items = [o for (n, _), o in store.items() if n == ns]
        if sel := request.query.get("labelSelector"):
            k, _, v = sel.partition("=")
            items = [o for o in items if o["metadata"].get("labels", {}).get(k) == v]
        return web.json_response({"kind": "PodList", "metadata": {"resourceVersion": str(self._rv)},
                                  "items": items})

    async def item(self, request: web.Request) -> web.StreamResponse:
        ns, kind, name = request.match_info["ns"], request.match_info["kind"], request.match_info["name"]
        self.requests.append((request.method, request.path, dict(request.query), request.content_type))
        if (denied := self._check(request, "rest")) is not None:
            return denied
        if name == "html502":
            return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")
        store = self.pods if kind == "pods" else self.secrets
        obj = store.get((ns, name))
        if obj is None:
            return status_response(404, "NotFound", f'{kind} "{name}" not found')
        if request.method == "GET":
            return web.json_response(obj)
        if request.method == "DELETE":
            del store[(ns, name)]
            return web.json_response(obj if kind == "pods" else SUCCESS)
        if request.method == "PATCH":
            patch = await request.json()
            for key, value in patch.items():
                if isinstance(value, dict) and isinstance(obj.get(key), dict):
                    obj[key].update(value)
                else:
                    obj[key] = value
            self._stamp(obj)
            return web.json_response(obj)
        return status_response(405, "MethodNotAllowed", "method not allowed")

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for event in self.watch.events:
            await resp.write(json.dumps(event).encode() + b"\n")
        if self.watch.then == "cut":
            assert request.transport is not None
            request.transport.close()
            return resp
        if self.watch.then == "hang":
            await self.release.wait()
        await resp.write_eof()
        return resp

    # --- streams -----------------------------------------------------------------------------

    def _protocols(self, request: web.Request) -> tuple[str, ...]:
        self.offered.append(request.headers.get("Sec-WebSocket-Protocol", ""))
        return (V4,) if self.v4_only else (V5, V4)

    async def attach(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._check(request, "ws")) is not None:
            return denied
        _, missing = self._pod_or_404(request)
        if missing is not None:
            return missing
        ws = web.WebSocketResponse(protocols=self._protocols(request))
        await ws.prepare(request)
        self.negotiated.append(ws.ws_protocol or "")
        name = request.match_info["name"]
        sink = self.stdin.setdefault(name, bytearray())
        await ws.send_bytes(b"\x03")  # the server's "stream open" marker on the lowest channel
        if name == "stopped":  # as a v5 apiserver does: upgrade first, then report the kubelet's error
            failure = status(500, "InternalError", 'Internal error occurred: container "b" is not running')
            await ws.send_bytes(b"\x03" + json.dumps(failure).encode())
            await ws.close()
            return ws
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                break
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            self.attach_messages.append(data)
            if data[:1] == b"\x00":
                sink += data[1:]
                if name == "dropper":  # the connection dies right after the bytes arrived
                    assert request.transport is not None
                    request.transport.close()
                    return ws
            elif data == b"\xff\x00" and ws.ws_protocol == V5:
                # stdinOnce=false: the session ends at once, the process keeps its stdin.
                await ws.send_bytes(b"\x03" + json.dumps(SUCCESS).encode())
                await ws.close()
        return ws

    async def exec(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._check(request, "ws")) is not None:
            return denied
        _, missing = self._pod_or_404(request)
        if missing is not None:
            return missing
        argv = request.query.getall("command", [])
        blackhole = argv[:1] == ["blackhole"]
        ws = web.WebSocketResponse(protocols=self._protocols(request), autoping=not blackhole)
        await ws.prepare(request)
        self.negotiated.append(ws.ws_protocol or "")
        await ws.send_bytes(b"\x01")
        result: dict[str, Any] = SUCCESS
        match argv:
            case ["echo", *words]:
                await ws.send_bytes(b"\x01" + " ".join(words).encode() + b"\n")
            case ["exit", code]:
                await ws.send_bytes(b"\x01out\n")
                await ws.send_bytes(b"\x02err\n")
                result = exit_status(int(code))
            case ["bytes"]:
                # A multi-byte character split across frames, and bytes that are not UTF-8.
                for piece in (b"\xe2\x82", b"\xac\n", b"\xff\xfe\x00"):
                    await ws.send_bytes(b"\x01" + piece)
            case ["cat"]:
                async for msg in ws:
                    data = msg.data if isinstance(msg.data, bytes) else str(msg.data).encode()
                    if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT) or data == b"\xff\x00":
                        break
                    if data[:1] == b"\x00":
                        await ws.send_bytes(b"\x01" + data[1:])
            case ["nosuch", *_]:
                result = status(500, "InternalError",
                                'Internal error occurred: exec: "nosuch": executable file not found')
            case ["drop"]:
                await ws.send_bytes(b"\x01partial")
                assert request.transport is not None
                request.transport.close()  # TCP ends without a close frame or a status
                return ws
            case ["blackhole"]:
                await self.release.wait()  # never reads, so pings go unanswered
                return ws
        await ws.send_bytes(b"\x03" + json.dumps(result).encode())
        await ws.close()
        return ws

    async def log(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query), ""))
        if (denied := self._check(request, "log")) is not None:
            return denied
        _, missing = self._pod_or_404(request)
        if missing is not None:
            return missing
        name, container = request.match_info["name"], request.query.get("container", "")
        script = self.logs.get(name, LogScript())
        if script.waiting:
            return status_response(400, "BadRequest", f'container "{container}" in pod "{name}" '
                                   f"is waiting to start: {script.waiting}")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for chunk in script.chunks:
            await resp.write(chunk)
        if script.then == "cut":
            assert request.transport is not None
            request.transport.close()
            return resp
        if script.then == "hang":
            await self.release.wait()
        await resp.write_eof()
        return resp
