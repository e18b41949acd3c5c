"""metav1.Status bodies shaped as the real API server's, and the exception that carries one.

Both halves of the cluster raise `StatusError`; one middleware turns it into the JSON response, so
no handler ever answers with a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class StatusError(Exception):
    """A request failed with a Kubernetes Status (4xx/5xx)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return failure_body(self.code, self.reason, self.message, self.details)

    def response(self) -> web.Response:
        response = web.Response(
            status=self.code, text=json.dumps(self.body()), content_type="application/json"
        )
        # As the real server does for any Status that asks for a retry: client-go honours the header
        # (retrying up to 10 times), not the body's field.
        retry_after = (self.details or {}).get("retryAfterSeconds")
        if isinstance(retry_after, int) and retry_after > 0:
            response.headers["Retry-After"] = str(retry_after)
        return response


def failure_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if not reason:
        del body["reason"]  # an internal error with no StatusReason, as the server encodes it
    if details is not None:
        body["details"] = details
    return body


def not_found(resource: str, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource})


def already_exists(resource: str, name: str) -> StatusError:
    return StatusError(
        409, "AlreadyExists", f'{resource} "{name}" already exists', {"name": name, "kind": resource}
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def invalid(kind: str, name: str, causes: list[dict[str, str]]) -> StatusError:
    """422 Invalid; each cause has reason, message and field, as the API server's field errors."""
    texts = [f"{c['field']}: {c['message']}" for c in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return StatusError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {joined}',
        {"name": name, "kind": kind, "causes": causes},
    )
