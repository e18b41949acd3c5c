"""The runner's half of GitLab's runner API (`/api/v4`), on aiohttp.

Each call returns a small typed outcome; deciding what an outcome means for a job (cancel, abort,
resend) is left to `kuberunner.runner`. Transient failures are retried here, the way GitLab Runner
does: 408, 429, 500, 502, 503, 504 and >= 512, plus dropped connections, at most `attempts` times,
with a backoff that honours `Retry-After`. The exception tree::

    GitLabError               a call failed for good
     ├── Unreachable          no HTTP answer (refused, reset, timed out) after every attempt
     ├── Untrusted            GitLab's TLS certificate cannot be verified (never retried: it will not heal)
     ├── TooLarge             a reply body over the limit (never parsed truncated)
     └── Rejected             an HTTP status the call cannot go on with (403 bad token, 410, …)

Every attempt is bounded (`Timeouts`), and a timed-out attempt is retried on a new connection, so
a reply that never comes costs one timeout, not the job. A trace PATCH or a job PUT gets a short
first try (a live GitLab answers them within a second or two), then doubled bounds up to `call`.
Silence during a long poll cannot be judged that way: Workhorse holds it on purpose for up to its
`apiCiLongPollingDuration` (50 s on GitLab.com). There the net is TCP: every socket to GitLab has
keepalive and TCP_USER_TIMEOUT short enough that a path that drops every packet (a NAT or conntrack
entry gone, a vanished host) fails the socket within `KEEPALIVE.user_timeout_ms`, whatever call is
waiting on it. Bodies are read whole, up to a limit: a reply in several TCP segments is never cut.

aiohttp's exceptions never leave this module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp

from kuberunner import __version__
from kuberunner.gitlab.payload import recover_id_and_token
from kuberunner.tcp_keepalive import ABORT_CLOSED_TLS, Keepalive, keepalive_factory

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
LONG_POLL_TIMEOUT = 70.0
"""Seconds for one `jobs/request`: GitLab's Workhorse holds it up to 50 s."""
CALL_TIMEOUT = 30.0
"""Seconds for one attempt of any other call (a trace PATCH, a PUT, verify, …)."""
FIRST_TRY_TIMEOUT = 6.0
"""Seconds for the first attempt of a trace PATCH or a job PUT: a connection that swallows bytes
but still ACKs them (a proxy or load balancer whose far side died) is left within 10 s. A GitLab
that is merely slow gets the next attempts with doubled bounds; a PATCH or PUT it did take is
harmless to send again (416 re-syncs the trace; a finished job answers the same or 403)."""
NO_ANSWER = -100
"""The status reported for a call that got no answer at all (GitLab Runner's `clientError`)."""
MAX_JOB_BODY = 32 << 20
"""Bytes of a job payload (its variables can be large); anything bigger is refused, not cut."""
MAX_BODY = 1 << 20
"""Bytes of any other reply; GitLab's are a few hundred."""
KEEPALIVE = Keepalive(idle=2, interval=1, count=3, user_timeout_ms=5_000)
"""A probe after 2 s of quiet (one small packet every 2 s on a held long poll); a path that stops
answering probes, or ACKing sent data, fails the socket after 5 s, which is what bounds a long poll
on a dead path (Linux: TCP_USER_TIMEOUT decides for keepalive too, once a probe is out). Shorter
than `FIRST_TRY_TIMEOUT`, so on a dead path the socket's error comes first."""

FEATURES: dict[str, bool] = {
    # Honest: only what kuberunner implements. Rails holds back jobs that need a feature we lack.
    "variables": True,
    "image": True,
    "services": False,
    "artifacts": False,
    "cache": False,
    "fallback_cache_keys": False,
    "shared": False,
    "upload_multiple_artifacts": False,
    "upload_raw_artifacts": False,
    "session": False,
    "terminal": False,
    "refspecs": False,
    "masking": True,
    "proxy": False,
    "raw_variables": False,
    "artifacts_exclude": False,
    "multi_build_steps": False,
    "trace_reset": False,
    "trace_checksum": True,
    "trace_size": True,
    "vault_secrets": False,
    "cancelable": True,
    "return_exit_code": True,
    "service_variables": False,
    "service_multiple_aliases": False,
    "image_executor_opts": False,
    "service_executor_opts": False,
    "cancel_gracefully": True,
    "native_steps_integration": False,
    "two_phase_job_commit": False,
    "job_inputs": False,
    "trace_sections": True,
}


class GitLabError(Exception):
    """A call to GitLab failed for good."""


class Unreachable(GitLabError):
    pass


class Untrusted(GitLabError):
    pass


class TooLarge(GitLabError):
    pass


class Rejected(GitLabError):
    def __init__(self, status: int, what: str, message: str = "") -> None:
        super().__init__(f"{what}: GitLab answered {status}{': ' + message if message else ''}")
        self.status = status


@dataclass(frozen=True, slots=True)
class Registration:
    id: int
    token: str
    token_expires_at: str | None


@dataclass(frozen=True, slots=True)
class BrokenJob:
    """GitLab handed out a job whose payload cannot be used; it must still be told it failed."""

    reason: str
    id: int | None
    token: str | None
    """Recovered from the body's first top-level fields, when they could be read."""


@dataclass(frozen=True, slots=True)
class JobOffer:
    """One `jobs/request` answer: the decoded job (None for "no job") and the queue version to echo."""

    job: Any
    last_update: str | None
    broken: BrokenJob | None = None
    """Set (and `job` None) when a job was dequeued but its payload is unusable."""


@dataclass(frozen=True, slots=True)
class TraceReply:
    status: int
    range_end: int | None
    """The server's stored size (from `Range: 0-N`), on 202 and 416."""
    job_status: str | None
    update_interval: float | None


@dataclass(frozen=True, slots=True)
class UpdateReply:
    status: int
    job_status: str | None
    update_interval: float | None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    """GitLab Runner's limit for one call."""
    first_delay: float = 0.1
    max_delay: float = 60.0


@dataclass(frozen=True, slots=True)
class Timeouts:
    call: float = CALL_TIMEOUT
    long_poll: float = LONG_POLL_TIMEOUT
    first_try: float = FIRST_TRY_TIMEOUT
    """The first attempt's bound for trace PATCHes and job PUTs (never above `call`)."""

    def attempt_bound(self, attempt: int) -> float:
        """Seconds for attempt `attempt` (1-based) of a PATCH or PUT: doubling from `first_try`."""
        return min(self.call, self.first_try * 2.0 ** (attempt - 1))


def api_base(url: str) -> str:
    """GitLab Runner's normalisation: no trailing `/` or `/ci`, then `/api/v4`."""
    base = url.strip().rstrip("/")
    if base.endswith("/ci"):
        base = base[:-3]
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"{url!r}: only http and https URLs are accepted")
    return base + "/api/v4"


def runner_info(executor: str = "kubernetes") -> dict[str, Any]:
    return {
        "name": "kuberunner",
        "version": __version__,
        "revision": "",
        "platform": "linux",
        "architecture": "amd64",
        "executor": executor,
        "shell": "bash",
        "features": dict(FEATURES),
    }


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    too_large: bool = False
    """`body` is only the first `limit` bytes of a longer one."""

    def json(self) -> Any:
        if "application/json" not in self.headers.get("Content-Type", ""):
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class GitLabClient:
    """One HTTP session to one GitLab; `async with GitLabClient(url) as api:`."""

    def __init__(
        self,
        url: str,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        tls_ca_file: str | None = None,
        max_job_body: int = MAX_JOB_BODY,
        on_answer: Callable[[str, str, int], None] | None = None,
    ) -> None:
        """ValueError for a URL that is not http(s); OSError or ssl.SSLError for an unusable CA file."""
        self.base = api_base(url)
        self._retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self._max_job_body = max_job_body
        self._tls_ca_file = tls_ca_file
        # Read now, so a missing or broken file is a start-up error rather than a failure per call.
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=tls_ca_file) if tls_ca_file else True
        )
        self._session: aiohttp.ClientSession | None = None
        self._fresh_session: aiohttp.ClientSession | None = None
        """A new connection for every request: for the tries after one that got no answer."""
        self._on_answer = on_answer
        """Hears (method, path, status) of every answer GitLab gives, NO_ANSWER for none (`run`'s
        request metrics)."""

    async def __aenter__(self) -> Self:
        self._session, self._fresh_session = (
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=self._ssl,
                    socket_factory=_keepalive_socket,
                    force_close=fresh,
                    enable_cleanup_closed=ABORT_CLOSED_TLS,
                ),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
                headers={"User-Agent": f"kuberunner {__version__} (linux)"},
            )
            for fresh in (False, True)
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for session in (self._session, self._fresh_session):
            if session is not None:
                await session.close()

    # -- runners -------------------------------------------------------------------------------

    async def verify(self, *, token: str, system_id: str) -> Registration:
        answer = await self._call(
            "POST",
            "/runners/verify",
            json_body={"token": token, "system_id": system_id, "info": runner_info()},
            what="verifying the runner",
        )
        if answer.status != 200:
            raise Rejected(answer.status, "verifying the runner", _message(answer))
        return _registration(answer, token_default=token)

    async def register(self, *, token: str, description: str, system_id: str) -> Registration:
        answer = await self._call(
            "POST",
            "/runners",
            json_body={
                "token": token,
                "description": description,
                "system_id": system_id,
                "info": runner_info(),
                "run_untagged": True,
                "locked": True,
                "paused": False,
            },
            what="registering the runner",
        )
        if answer.status != 201:
            raise Rejected(answer.status, "registering the runner", _message(answer))
        return _registration(answer, token_default=None)

    async def unregister(self, *, token: str, system_id: str) -> None:
        """glrt- tokens delete this machine's runner manager; legacy ones delete the runner."""
        if token.startswith("glrt-"):
            path, body = "/runners/managers", {"token": token, "system_id": system_id}
        else:
            path, body = "/runners", {"token": token}
        answer = await self._call("DELETE", path, json_body=body, what="unregistering the runner")
        if answer.status != 204:
            raise Rejected(answer.status, "unregistering the runner", _message(answer))

    # -- jobs ----------------------------------------------------------------------------------

    async def request_job(self, *, token: str, system_id: str, last_update: str | None) -> JobOffer:
        body: dict[str, Any] = {"token": token, "system_id": system_id, "info": runner_info()}
        if last_update:
            body["last_update"] = last_update
        answer = await self._call(
            "POST",
            "/jobs/request",
            json_body=body,
            what="requesting a job",
            request_timeout=self.timeouts.long_poll,
            limit=self._max_job_body,
            partial_ok=True,
        )
        seen = answer.headers.get("X-GitLab-Last-Update") or last_update
        if answer.status == 201:
            # GitLab has dequeued the job: whatever is wrong with it, it must not be dropped silently.
            job = None if answer.too_large else answer.json()
            if job is not None:
                return JobOffer(job, seen)
            if answer.too_large:
                reason = f"the job payload is larger than {self._max_job_body} bytes"
            elif "application/json" not in answer.headers.get("Content-Type", ""):
                reason = f"the job payload is not JSON (Content-Type {answer.headers.get('Content-Type')!r})"
            else:
                reason = f"the job payload is not valid JSON ({len(answer.body)} bytes)"
            job_id, job_token = recover_id_and_token(answer.body)
            return JobOffer(None, seen, BrokenJob(reason, job_id, job_token))
        if answer.status in (204, 409, 503):
            return JobOffer(None, seen)
        raise Rejected(answer.status, "requesting a job", _message(answer))

    async def patch_trace(self, *, job_id: int, job_token: str, start: int, data: bytes) -> TraceReply:
        headers = {
            "JOB-TOKEN": job_token,
            "Content-Range": f"{start}-{start + len(data) - 1}",
            "Content-Type": "text/plain",
        }
        answer = await self._call(
            "PATCH",
            f"/jobs/{job_id}/trace",
            data=data,
            headers=headers,
            what="sending the trace",
            short_first_try=True,
        )
        return TraceReply(
            answer.status,
            _range_end(answer.headers.get("Range")),
            answer.headers.get("Job-Status"),
            _interval(answer.headers),
        )

    async def update_job(
        self,
        *,
        job_id: int,
        job_token: str,
        state: str,
        failure_reason: str | None = None,
        exit_code: int | None = None,
        checksum: str | None = None,
        bytesize: int | None = None,
    ) -> UpdateReply:
        body: dict[str, Any] = {"token": job_token, "state": state, "info": runner_info()}
        if failure_reason:
            body["failure_reason"] = failure_reason
        if exit_code:
            body["exit_code"] = exit_code
        if checksum is not None:
            body["checksum"] = checksum
            body["output"] = {"checksum": checksum, "bytesize": bytesize or 0}
        answer = await self._call(
            "PUT",
            f"/jobs/{job_id}",
            json_body=body,
            headers={"JOB-TOKEN": job_token},
            what="updating the job",
            short_first_try=True,
        )
        return UpdateReply(answer.status, answer.headers.get("Job-Status"), _interval(answer.headers))

    # -- transport -----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json_body: Any = None,
        data: bytes = b"",
        headers: Mapping[str, str] | None = None,
        request_timeout: float | None = None,
        limit: int = MAX_BODY,
        partial_ok: bool = False,
        short_first_try: bool = False,
    ) -> _Answer:
        assert self._session is not None and self._fresh_session is not None, "use `async with`"
        timeout = aiohttp.ClientTimeout(total=request_timeout or self.timeouts.call)
        send = dict(headers or {})
        payload = data
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            send.setdefault("Content-Type", "application/json")
            send["Accept"] = "application/json"
        delay = self._retry.first_delay
        failure = ""
        unanswered = False
        for attempt in range(1, self._retry.attempts + 1):
            send["X-Request-Id"] = uuid.uuid4().hex
            wait = delay
            if short_first_try:
                timeout = aiohttp.ClientTimeout(total=self.timeouts.attempt_bound(attempt))
            # After a try with no answer, never a pooled connection: one idle in the pool may sit on
            # the same dead path or silent middlebox.
            session = self._fresh_session if unanswered else self._session
            try:
                async with session.request(
                    method,
                    self.base + path,
                    data=payload,
                    headers=send,
                    timeout=timeout,
                ) as response:
                    body, too_large = await _read_body(response, limit)
                    answer = _Answer(response.status, dict(response.headers), body, too_large)
                    if self._on_answer is not None:
                        self._on_answer(method, path, answer.status)
                    if too_large:
                        # The rest is never read: this connection must not go back to the pool.
                        response.close()
            except aiohttp.ClientConnectorCertificateError as exc:
                raise Untrusted(f"{what}: {_certificate_problem(exc, self._tls_ca_file)}") from None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                # aiohttp closes a timed-out or broken connection; the next try takes a new one.
                unanswered = True
                if self._on_answer is not None:
                    self._on_answer(method, path, NO_ANSWER)
                failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if isinstance(exc, TimeoutError):
                    failure = f"no reply within {timeout.total:g} s"
            else:
                if answer.too_large and not partial_ok:
                    raise TooLarge(f"{what}: GitLab's reply is larger than {limit} bytes")
                if not _retried(answer.status):
                    return answer
                failure = f"GitLab answered {answer.status}"
                wait = max(delay, _retry_after(answer.headers) or 0.0)
            if attempt == self._retry.attempts:
                break
            log.info("%s: %s; retrying in %.1f s", what, failure, wait)
            await asyncio.sleep(min(wait, self._retry.max_delay) * random.uniform(1.0, 1.2))
            delay = min(delay * 2, self._retry.max_delay)
        raise Unreachable(f"{what}: {failure} ({self._retry.attempts} attempts)")


async def _read_body(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """The whole body, or its first `limit` bytes and True when it is longer.

    One `read(n)` returns whatever is buffered, which for a body in several TCP segments is only its
    start; read to the end instead."""
    declared = response.content_length
    body = bytearray()
    if declared is not None and declared > limit:
        body += await response.content.read(limit)
        return bytes(body), True
    while True:
        chunk = await response.content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body), False
        body += chunk
        if len(body) > limit:
            return bytes(body[:limit]), True


_keepalive_socket = keepalive_factory(KEEPALIVE)


def _certificate_problem(exc: aiohttp.ClientConnectorCertificateError, ca_file: str | None) -> str:
    error = exc.certificate_error
    detail = getattr(error, "verify_message", None) or str(error)
    where = f"{exc.host}:{exc.port}"
    trusted = f"the CA in tls-ca-file {ca_file}" if ca_file else "the system's CAs (no tls-ca-file)"
    return f"GitLab's TLS certificate at {where} cannot be verified against {trusted}: {detail}"


def _retried(status: int) -> bool:
    return status in RETRIED_STATUSES or status >= 512


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except ValueError:
        return None


def _interval(headers: Mapping[str, str]) -> float | None:
    try:
        value = float(headers.get("X-GitLab-Trace-Update-Interval", ""))
    except ValueError:
        return None
    return min(value, 900.0) if value > 0 else None


def _range_end(header: str | None) -> int | None:
    if not header:
        return None
    _, sep, end = header.partition("-")
    return int(end) if sep and end.strip().isdigit() else None


def _message(answer: _Answer) -> str:
    decoded = answer.json()
    if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
        return str(decoded["message"])
    return answer.body[:200].decode("utf-8", "replace").strip()


def _registration(answer: _Answer, *, token_default: str | None) -> Registration:
    decoded = answer.json()
    if not isinstance(decoded, dict):
        decoded = {}
    token = decoded.get("token") or token_default
    runner_id = decoded.get("id", 0)
    if not isinstance(token, str) or not isinstance(runner_id, int):
        raise Rejected(answer.status, "registering the runner", "the reply has no token")
    expires = decoded.get("token_expires_at")
    return Registration(runner_id, token, expires if isinstance(expires, str) else None)
