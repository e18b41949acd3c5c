"""A fake GitLab for the runner's tests, faithful to the checklist in gitlab-runner-api.md §9.

It keeps runners, a job queue with a version per runner token (long poll), job states
(pending → running → canceling → canceled | success | failed), each job's trace as appended by
PATCHes (416 with `Range` on a gap or overlap), and every request it saw. Faults are scripted with
`inject`: the next matching requests get a canned status (and headers), or are held after the
trace was appended so a test can reset the connection before the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import ssl
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from .git_http import git_handler

ACCEPTED_REASONS = [
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "missing_dependency_failure",
    "runner_unsupported",
    "job_execution_timeout",
]


@dataclass
class FakeRunner:
    id: int
    token: str
    queue_version: int = 1
    managers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """system_id → the `info` it sent last."""


@dataclass
class FakeJob:
    id: int
    token: str
    spec: dict[str, Any]
    state: str = "pending"
    runner_token: str | None = None
    graceful: bool = False
    trace: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)
    """Bytes as the runner sent them, before server-side masking (the checksum covers these)."""
    patches: list[tuple[str, int]] = field(default_factory=list)
    """(Content-Range, reply status) of every PATCH."""
    updates: list[dict[str, Any]] = field(default_factory=list)
    failure_reason: str | None = None
    exit_code: int | None = None
    checksum_ok: bool | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    artifacts: list[Upload] = field(default_factory=list)
    """Every accepted artifacts upload, in order."""

    def artifact(self, artifact_type: str) -> Upload:
        return next(u for u in self.artifacts if u.fields.get("artifact_type") == artifact_type)

    @property
    def text(self) -> bytes:
        return bytes(self.trace)


@dataclass
class Upload:
    """One `POST /jobs/:id/artifacts`: its form fields, and the file as sent."""

    fields: dict[str, str]
    filename: str
    data: bytes


@dataclass
class Fault:
    method: str
    path_end: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    hold: asyncio.Event | None = None
    """PATCH: append the bytes, then wait for this event before replying (set `arrived`). A final
    PUT: wait for it, then answer 503 without recording anything."""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    peer: tuple[str, int] | None = None
    """The runner's end of the connection a held request came on (to cut that one path)."""


class FakeGitLab:
    def __init__(self, repos: Path, *, long_poll: float = 0.3, trace_interval: float = 1) -> None:
        self.runners: dict[str, FakeRunner] = {}
        self.registration_tokens = {"glrtr-registration"}
        self.jobs: dict[int, FakeJob] = {}
        self.queue: list[int] = []
        self.requests: list[tuple[float, str, str, int]] = []
        """(monotonic time, method, path, reply status) of every request."""
        self.arrivals: list[tuple[float, str, str, tuple[str, int]]] = []
        """(monotonic time, method, path, the runner's end of the connection) as each request came."""
        self.held_polls: list[tuple[str, int]] = []
        """The runner's end of each `jobs/request` connection at the moment its long poll began."""
        self.faults: list[Fault] = []
        self.long_poll = long_poll
        self.trace_interval = trace_interval
        self.running_peak = 0
        self.clone_requests = 0
        """Authenticated requests to the git http-backend."""
        self.token_in_argv: list[bytes] = []
        """Command lines of processes that held the job token while git asked for the repository."""
        self.base_url = ""
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._repos = repos
        self.head = subprocess.run(
            ["git", "rev-parse", "main"],
            cwd=repos / "group" / "project.git",
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        self._site: web.AppRunner | None = None

    # -- test API --------------------------------------------------------------------------------

    def add_runner(self, token: str | None = None) -> FakeRunner:
        runner = FakeRunner(next(self._ids), token or "glrt-" + secrets.token_hex(10))
        self.runners[runner.token] = runner
        return runner

    def enqueue(self, spec: dict[str, Any]) -> FakeJob:
        job = FakeJob(next(self._ids) + 1000, "glcbt-" + secrets.token_hex(10), spec)
        self.jobs[job.id] = job
        self.queue.append(job.id)
        self._bump()
        return job

    def force_cancel(self, job: FakeJob) -> None:
        """A user's force-cancel (or any cancel without cancel_gracefully): straight to canceled."""
        job.state = "canceled"
        job.finished.set()

    def cancel(self, job: FakeJob) -> None:
        job.state = "canceling" if job.graceful else "canceled"
        if job.state == "canceled":
            job.finished.set()

    def inject(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def running(self) -> int:
        return sum(1 for j in self.jobs.values() if j.state in ("running", "canceling"))

    async def start(self, ssl_context: ssl.SSLContext | None = None, *, host: str = "127.0.0.1") -> str:
        """Listens on `host` (the real tier passes an address its pods reach, for git clones)."""
        app = web.Application(client_max_size=1 << 31)
        app.router.add_post("/api/v4/runners/verify", self.verify)
        app.router.add_post("/api/v4/runners", self.register)
        app.router.add_delete("/api/v4/runners", self.delete_runner)
        app.router.add_delete("/api/v4/runners/managers", self.delete_manager)
        app.router.add_post("/api/v4/jobs/request", self.request_job)
        app.router.add_patch("/api/v4/jobs/{id}/trace", self.patch_trace)
        app.router.add_put("/api/v4/jobs/{id}", self.update_job)
        app.router.add_post("/api/v4/jobs/{id}/artifacts", self.upload_artifacts)
        app.router.add_get("/api/v4/jobs/{id}/artifacts", self.download_artifacts)
        app.router.add_route("*", "/{repo:.+\\.git}/{rest:.*}", git_handler(self._repos, self._may_clone))
        app.middlewares.append(self._record)
        self._site = web.AppRunner(app, handle_signals=False)
        await self._site.setup()
        site = web.TCPSite(self._site, host, 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"{'https' if ssl_context else 'http'}://{host}:{port}"
        return self.base_url

    async def close(self) -> None:
        # Held long polls end now, as at a Workhorse restart; the server's cleanup would otherwise
        # wait out each one (up to `long_poll` seconds).
        async with self._changed:
            self._changed.notify_all()
        if self._site is not None:
            await self._site.cleanup()

    # -- plumbing --------------------------------------------------------------------------------

    def _bump(self) -> None:
        for runner in self.runners.values():
            runner.queue_version += 1

        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.arrivals.append((time.monotonic(), request.method, request.path, _peer(request)))
        for fault in self.faults:
            if (
                fault.times > 0
                and fault.hold is None
                and request.method == fault.method
                and request.path.endswith(fault.path_end)
            ):
                fault.times -= 1
                fault.arrived.set()
                self.requests.append((time.monotonic(), request.method, request.path, fault.status))
                return _json({"message": "injected"}, fault.status, fault.headers)
        response: web.StreamResponse = await handler(request)
        self.requests.append((time.monotonic(), request.method, request.path, response.status))
        return response

    def _may_clone(self, token: str) -> bool:
        # git-remote-http waits for this very reply: whatever argv carries the token shows now.
        self.clone_requests += 1
        self.token_in_argv += _argv_holding(token.encode())
        return any(j.token == token and j.state in ("running", "canceling") for j in self.jobs.values())

    async def _body(self, request: web.Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _job_for(self, request: web.Request, body: dict[str, Any] | None) -> FakeJob | web.Response:
        job = self.jobs.get(int(request.match_info["id"])) if request.match_info["id"].isdigit() else None
        token = request.headers.get("JOB-TOKEN") or (body or {}).get("token")
        if job is None or job.token != token:
            return _json({"message": "403 Forbidden"}, 403)
        if job.state not in ("running", "canceling"):
            return _json({"message": "403 Forbidden - Job is not running"}, 403, {"Job-Status": job.state})
        return job

    # -- runners ---------------------------------------------------------------------------------

    async def verify(self, request: web.Request) -> web.Response:
        body = await self._body(request) or {}
        runner = self.runners.get(body.get("token", ""))
        if runner is None:
            return _json({"message": "403 Forbidden"}, 403)
        runner.managers[str(body.get("system_id", "<legacy>"))] = body.get("info", {})
        return _json({"id": runner.id, "token": runner.token, "token_expires_at": None}, 200)

    async def register(self, request: web.Request) -> web.Response:
        body = await self._body(request) or {}
        if body.get("token") not in self.registration_tokens:
            return _json({"message": "403 Forbidden"}, 403)
        runner = self.add_runner(secrets.token_hex(10))
        return _json({"id": runner.id, "token": runner.token, "token_expires_at": None}, 201)

    async def delete_runner(self, request: web.Request) -> web.Response:
        body = await self._body(request) or {}
        if self.runners.pop(body.get("token", ""), None) is None:
            return _json({"message": "403 Forbidden"}, 403)
        return web.Response(status=204)

    async def delete_manager(self, request: web.Request) -> web.Response:
        body = await self._body(request) or {}
        runner = self.runners.get(body.get("token", ""))
        if runner is None:
            return _json({"message": "403 Forbidden"}, 403)
        if runner.managers.pop(str(body.get("system_id")), None) is None:
            return _json({"message": "404 Not Found"}, 404)
        return web.Response(status=204)

    # -- jobs ------------------------------------------------------------------------------------

    async def request_job(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if body is None or "token" not in body:
            return _json({"message": "400 Bad request - token is missing"}, 400)
        runner = self.runners.get(body["token"])
        if runner is None:
            return _json({"message": "403 Forbidden"}, 403)
        headers = {"Gitlab-Ci-Builds-Polling": "yes"}
        if body.get("last_update") == str(runner.queue_version):
            # Workhorse's long poll: held until the queue changes or the duration ends, then 204.
            self.held_polls.append(_peer(request))
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=self.long_poll)
                return web.Response(status=204, headers=headers)
        features = (body.get("info") or {}).get("features") or {}
        for job_id in list(self.queue):
            job = self.jobs[job_id]
            needed = job.spec.get("_requires", [])
            if any(not features.get(name) for name in needed):
                continue
            self.queue.remove(job_id)
            job.state, job.runner_token = "running", runner.token
            job.graceful = bool(features.get("cancel_gracefully"))
            self.running_peak = max(self.running_peak, self.running())
            runner.queue_version += 1
            raw = job.spec.get("_raw_body")
            body = raw(job) if raw is not None else json.dumps(self._payload(job)).encode()
            if job.spec.get("_two_chunks"):
                return await _two_chunks(request, body)
            return web.Response(status=201, body=body, content_type="application/json")
        headers["X-GitLab-Last-Update"] = str(runner.queue_version)
        return web.Response(status=204, headers=headers)

    def _payload(self, job: FakeJob) -> dict[str, Any]:
        spec = {k: v for k, v in job.spec.items() if not k.startswith("_")}
        scheme, _, host = self.base_url.partition("://")
        repo_url = f"{scheme}://gitlab-ci-token:{job.token}@{host}/group/project.git"
        variables = [
            {"key": "CI_JOB_ID", "value": str(job.id), "public": True, "masked": False},
            {"key": "CI_JOB_TOKEN", "value": job.token, "public": False, "masked": True},
            {"key": "CI_PROJECT_PATH", "value": "group/project", "public": True, "masked": False},
            {"key": "CI_REPOSITORY_URL", "value": repo_url, "public": False, "masked": False},
            *spec.pop("variables", []),
        ]
        git_info = {
            "repo_url": repo_url,
            "ref": "main",
            "sha": self.head,
            "before_sha": "0" * 40,
            "ref_type": "branch",
            "depth": 0,
            "refspecs": ["+refs/heads/main:refs/remotes/origin/main"],
            **spec.pop("git_info", {}),
        }
        payload = {
            "id": job.id,
            "token": job.token,
            "allow_git_fetch": True,
            "job_info": {
                "id": job.id,
                "name": spec.pop("name", "job"),
                "stage": "test",
                "project_id": 7,
                "project_name": "project",
                "pipeline_id": 70,
            },
            "git_info": git_info,
            "runner_info": {"timeout": spec.pop("timeout", 3600)},
            "variables": variables,
            "steps": spec.pop("steps"),
            "image": spec.pop("image", {}),
            "services": [],
            "artifacts": [],
            "cache": [],
            "credentials": [],
            "dependencies": [],
            "features": {"trace_sections": True, "failure_reasons": ACCEPTED_REASONS},
        }
        payload.update(spec)
        return payload

    async def patch_trace(self, request: web.Request) -> web.Response:
        data = await request.read()
        found = self._job_for(request, None)
        content_range = request.headers.get("Content-Range")
        if isinstance(found, web.Response):
            return found
        job = found
        if content_range is None:
            return _json({"message": "400 Bad request"}, 400)
        start = int(content_range.partition("-")[0])
        if start != len(job.trace):
            job.patches.append((content_range, 416))
            return _json({"message": "416 Range Not Satisfiable"}, 416, {"Range": f"0-{len(job.trace)}"})
        job.received += data
        job.trace += data.replace(job.token.encode(), b"[MASKED]".ljust(len(job.token), b"x"))
        job.patches.append((content_range, 202))
        for fault in self.faults:
            if fault.hold is not None and fault.times > 0 and request.method == fault.method:
                fault.times -= 1
                fault.peer = _peer(request)
                fault.arrived.set()
                await fault.hold.wait()
        return _json(
            {"message": "202"},
            202,
            {
                "Job-Status": job.state,
                "Range": f"0-{len(job.trace)}",
                "X-GitLab-Trace-Update-Interval": str(self.trace_interval),
            },
        )

    async def upload_artifacts(self, request: web.Request) -> web.Response:
        found = self._job_for(request, None)
        if isinstance(found, web.Response):
            return found
        fields: dict[str, str] = {}
        filename, data = "", b""
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader):
                return _json({"message": "400 Bad request - nested multipart"}, 400)
            if part.name == "file":
                filename, data = part.filename or "", bytes(await part.read())
            elif part.name:
                fields[part.name] = await part.text()
        if not filename:
            return _json({"message": "400 Bad request - file is missing"}, 400)
        found.artifacts.append(Upload(fields, filename, data))
        return _json({"id": found.id}, 201)

    async def download_artifacts(self, request: web.Request) -> web.Response:
        job = self.jobs.get(int(request.match_info["id"])) if request.match_info["id"].isdigit() else None
        if job is None or request.headers.get("JOB-TOKEN") != job.token:
            return _json({"message": "403 Forbidden"}, 403)
        archive = next((u for u in job.artifacts if u.fields.get("artifact_type") == "archive"), None)
        if archive is None:
            return _json({"message": "404 Not Found"}, 404)
        return web.Response(status=200, body=archive.data, content_type="application/zip")

    async def update_job(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if body is None or "token" not in body:
            return _json({"message": "400 Bad request - token is missing"}, 400)
        found = self._job_for(request, body)
        if isinstance(found, web.Response):
            return found
        job = found
        for fault in self.faults:
            if (
                fault.hold is not None
                and fault.times > 0
                and request.method == fault.method == "PUT"
                and request.path.endswith(fault.path_end)
                and body.get("state") != "running"
            ):
                fault.times -= 1
                fault.peer = _peer(request)
                fault.arrived.set()
                await fault.hold.wait()
                return _json({"message": "held"}, 503)
        job.updates.append(body)
        headers = {"Job-Status": job.state, "X-GitLab-Trace-Update-Interval": str(self.trace_interval)}
        state = body.get("state")
        if state == "running":
            return _json({"message": "200"}, 200, headers)
        if state not in ("success", "failed"):
            return _json({"message": "400 Bad request"}, 400)
        output = body.get("output") or {}
        expected = f"crc32:{zlib.crc32(bytes(job.received)) & 0xFFFFFFFF:08x}"
        job.checksum_ok = output.get("checksum") == expected and output.get("bytesize") == len(job.trace)
        if job.state == "canceling":
            job.state = "canceled"
        else:
            job.state = state
        if state == "failed":
            reason = body.get("failure_reason")
            job.failure_reason = reason if reason in ACCEPTED_REASONS else "unknown_failure"
            job.exit_code = body.get("exit_code")
        job.finished.set()
        return _json({"message": "200"}, 200, {**headers, "Job-Status": job.state})


def _peer(request: web.Request) -> tuple[str, int]:
    assert request.transport is not None
    host, port = request.transport.get_extra_info("peername")[:2]
    return str(host), int(port)


def _argv_holding(secret: bytes) -> list[bytes]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes()
            if secret in argv:
                found.append(argv.replace(b"\0", b" "))
    return found


async def _two_chunks(request: web.Request, body: bytes) -> web.StreamResponse:
    """A 201 whose body arrives in two TCP writes with a pause between: a reader that takes what is
    buffered gets only the first half. Nothing in the runner can be observed between the two halves,
    so the pause is a short delay."""
    response = web.StreamResponse(status=201, headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    half = len(body) // 2
    await response.write(body[:half])
    await response.drain()
    await asyncio.sleep(0.3)
    await response.write(body[half:])
    await response.write_eof()
    return response


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers or {}
    )
