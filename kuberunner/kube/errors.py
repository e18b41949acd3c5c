"""The cluster access layer's own exceptions, and the one place library errors are translated.

Callers above `kube/` must never see an aiohttp or kubernetes_asyncio exception: they decide
"retry", "the job failed" or "the runner is misconfigured" from this tree alone::

    KubeError(Exception)
     ├── KubeConfigError        a kubeconfig / settings problem; the message names the file and key
     ├── CertificateRejected    the server's certificate failed verification against the configured
     │                          CA (or its name did not match): a set-up problem, never retried
     ├── ApiUnreachable         connect refused/reset/timeout, other TLS failures: retryable, names the host
     ├── ApiStatusError         the API answered with an error Status (.code .reason .message)
     │    ├── NotFound          404
     │    ├── Unauthorized      401
     │    ├── Forbidden         403
     │    ├── Conflict          409 (other than AlreadyExists)
     │    ├── AlreadyExists     409 reason AlreadyExists
     │    └── Expired           410 (a watch resourceVersion too old: re-list)
     ├── StreamLost             a WebSocket or log stream ended abnormally mid-way (no status)
     │    └── StreamIdle        a log stream sent nothing for its idle timeout (reconnect, not failure)
     ├── ExecStartError         exec's channel-3 InternalError: the command could not start
     └── BodyTooLarge           an answer or watch event over its size bound (refused, not buffered)

`map_errors()` is the boundary: every public coroutine in `kube/` runs its library calls inside it.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp


class KubeError(Exception):
    """Base of every error raised by `kuberunner.kube`."""


class KubeConfigError(KubeError):
    """The cluster settings are unusable (bad kubeconfig, missing file, no cluster at all)."""


class CertificateRejected(KubeError):
    """TLS verification of the API server failed: retrying cannot help, the CA or server is wrong."""

    def __init__(self, message: str, *, host: str = "") -> None:
        super().__init__(message)
        self.host = host


class ApiUnreachable(KubeError):
    """No answer from the API server: connection refused, reset, timed out, or TLS failed."""

    def __init__(self, message: str, *, host: str = "") -> None:
        super().__init__(message)
        self.host = host


class ApiStatusError(KubeError):
    """The API server answered with an error `Status`."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}" if message else f"{code} {reason}")
        self.code = code
        self.reason = reason
        self.message = message


class NotFound(ApiStatusError):
    pass


class Unauthorized(ApiStatusError):
    pass


class Forbidden(ApiStatusError):
    pass


class Conflict(ApiStatusError):
    pass


class AlreadyExists(ApiStatusError):
    pass


class Expired(ApiStatusError):
    pass


class StreamLost(KubeError):
    """A stream ended without its proper end (no close frame, no status, a cut body)."""


class StreamIdle(StreamLost):
    """A log stream was silent for longer than its idle timeout; a quiet build is not a dead build."""


class ExecStartError(KubeError):
    """The exec'd command could not be started (channel-3 InternalError or another non-exit Failure)."""


class BodyTooLarge(KubeError):
    """An answer (or one watch event) over its size bound: refused rather than held in memory."""


_HTTP_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def status_error(code: int, reason: str, message: str) -> ApiStatusError:
    """The most specific `ApiStatusError` for a Status (code, reason, message)."""
    reason = reason or _HTTP_REASONS.get(code, "Unknown")
    cls: type[ApiStatusError]
    if code == 404:
        cls = NotFound
    elif code == 401:
        cls = Unauthorized
    elif code == 403:
        cls = Forbidden
    elif code == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
    elif code == 410:
        cls = Expired
    else:
        cls = ApiStatusError
    return cls(code, reason, message)


def status_from_body(http_status: int, body: bytes) -> ApiStatusError:
    """Build the error for a non-success answer from its body; tolerate bodies that are not a Status."""
    try:
        doc: Any = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("kind", "Status") == "Status":
        return status_from_dict(doc, default_code=http_status)
    text = body.decode("utf-8", errors="replace").strip()
    # A proxy's HTML error page is not worth quoting in full.
    return status_error(http_status, "", text[:200])


def status_from_dict(doc: dict[str, Any], *, default_code: int) -> ApiStatusError:
    code = doc.get("code")
    return status_error(
        code if isinstance(code, int) and code > 0 else default_code,
        str(doc.get("reason") or ""),
        str(doc.get("message") or ""),
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def map_errors(host: str = "", *, streaming: bool = False) -> Iterator[None]:
    """Translate aiohttp / socket errors into this module's tree.

    `streaming=True` is for code that already holds an open stream: a failure there means the
    stream was lost, not that the API is unreachable.
    """
    where = f" ({host})" if host else ""
    try:
        yield
    except KubeError:
        raise
    except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
        if streaming:
            raise StreamIdle(f"stream idle too long{where}: {_describe(exc)}") from exc
        raise ApiUnreachable(f"API server timed out{where}", host=host) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        if streaming:
            raise StreamLost(f"stream cut{where}: {_describe(exc)}") from exc
        raise ApiUnreachable(
            f"API server dropped the connection{where}: {_describe(exc)}", host=host
        ) from exc
    except aiohttp.ClientConnectorCertificateError as exc:
        raise _certificate_rejected(host, exc.certificate_error) from exc
    except ssl.SSLCertVerificationError as exc:
        raise _certificate_rejected(host, exc) from exc
    except aiohttp.ClientResponseError as exc:
        if exc.status >= 400:
            raise status_error(exc.status, "", exc.message) from exc
        raise ApiUnreachable(f"unexpected answer{where}: {_describe(exc)}", host=host) from exc
    except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
        if streaming:
            raise StreamLost(f"stream lost{where}: {_describe(exc)}") from exc
        raise ApiUnreachable(f"cannot reach the API server{where}: {_describe(exc)}", host=host) from exc


def _certificate_rejected(host: str, cause: BaseException) -> CertificateRejected:
    detail = getattr(cause, "verify_message", None) or str(cause)
    return CertificateRejected(
        f"TLS certificate verification of the API server {host or '?'} failed ({detail}): "
        "is the cluster's CA (certificate-authority / ca_file) the one that signed its certificate?",
        host=host,
    )
