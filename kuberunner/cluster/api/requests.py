"""Decoding of what a client sends: bodies by content type, query parameters, DeleteOptions.

Every failure is a 4xx `StatusError` whose message names the problem, as the API server's decoders
do; nothing here lets a malformed request reach the store. Bodies are read through `read_body`,
which stops at `MAX_BODY` bytes.
"""

from __future__ import annotations

import io
import json
from typing import Any

from aiohttp import web
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from kuberunner.cluster.api import kinds, protobuf, unknown
from kuberunner.cluster.api.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from kuberunner.cluster.status import StatusError, bad_request

BODY_TYPES = ("application/json", "application/yaml")
PROTOBUF = "application/vnd.kubernetes.protobuf"
MAX_BODY = 3 * 1024 * 1024
"""The real API server's request body limit. The largest object the runner sends, the scripts
Secret, stays under 1 MiB; the bound is what 200 concurrent writers can make this process hold."""
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def unsupported_media(accepted: tuple[str, ...]) -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def too_large(limit: int = MAX_BODY) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


async def read_body(request: web.Request, *, limit: int = MAX_BODY) -> bytes:
    """The request body, or 413 as soon as it is known to exceed `limit`: from Content-Length before
    a byte is read, else (chunked) once `limit` bytes have arrived."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


def parse_document(raw: bytes, content_type: str) -> Any:
    """JSON (the default when no content type was sent) or YAML, without any schema."""
    text = raw.decode("utf-8", errors="replace")
    if content_type.endswith("yaml"):
        try:
            return YAML(typ="safe", pure=True).load(io.StringIO(text))
        except YAMLError as exc:
            raise bad_request(f"error converting YAML to JSON: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        detail = "unexpected end of JSON input" if not text.strip() else str(exc)
        raise bad_request(f"couldn't get version/kind; json parse error: {detail}") from exc


async def read_object(request: web.Request, resource: str) -> dict[str, Any]:
    """The body of a create or update: JSON (also without a Content-Type), YAML, or for the kinds
    kubectl's typed commands send that way, protobuf."""
    content_type = request.content_type if request.headers.get("Content-Type") else "application/json"
    if content_type == PROTOBUF and resource in protobuf.KINDS:
        try:
            return protobuf.decode(resource, await read_body(request))
        except protobuf.ProtobufError as exc:
            raise bad_request(str(exc)) from exc
    if content_type not in BODY_TYPES:
        raise unsupported_media((*BODY_TYPES, PROTOBUF))
    body = parse_document(await read_body(request), content_type)
    if not isinstance(body, dict):
        kind = "array" if isinstance(body, list) else type(body).__name__
        raise bad_request(
            f"couldn't get version/kind; json parse error: json: cannot unmarshal {kind} "
            "into Go value of type struct { APIVersion string; Kind string }"
        )
    return body


async def read_patch(request: web.Request) -> tuple[str, Any]:
    content_type = request.content_type if request.headers.get("Content-Type") else ""
    if content_type not in PATCH_TYPES:
        raise unsupported_media(PATCH_TYPES)
    return content_type, parse_document(await read_body(request), content_type)


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = kinds.parse_bool(raw)
    if value is None:
        raise bad_request(f'invalid value for {name}: strconv.ParseBool: parsing "{raw}": invalid syntax')
    return value


def query_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad_request(
            f'invalid value for {name}: strconv.ParseInt: parsing "{raw}": invalid syntax'
        ) from None


def selectors(request: web.Request, resource: str) -> tuple[LabelSelector, FieldSelector]:
    try:
        labels = parse_label_selector(request.query.get("labelSelector", ""))
        fields = parse_field_selector(request.query.get("fieldSelector", ""), resource)
    except SelectorError as exc:
        raise bad_request(str(exc)) from exc
    return labels, fields


def resource_version(request: web.Request) -> int | None:
    """None for unset or "0" (meaning: start from the current state)."""
    raw = request.query.get("resourceVersion", "")
    if raw in ("", "0"):
        return None
    if not raw.isdigit():
        raise bad_request(f'Invalid value: "{raw}": invalid resource version')
    return int(raw)


async def delete_options(request: web.Request) -> tuple[int | None, dict[str, Any], bool]:
    """(gracePeriodSeconds, preconditions, dry run) from the query and an optional DeleteOptions
    body; kubectl sends the dry run in the body, other clients in the query."""
    grace = query_int(request, "gracePeriodSeconds")
    dry = dry_run(request)
    preconditions: dict[str, Any] = {}
    raw = await read_body(request)
    if raw.strip():
        content_type = request.content_type if request.headers.get("Content-Type") else "application/json"
        body = parse_document(raw, content_type if content_type in BODY_TYPES else "application/json")
        if not isinstance(body, dict):
            raise bad_request("DeleteOptions must be a JSON object")
        sent = body.get("gracePeriodSeconds")
        if sent is not None:
            if not isinstance(sent, int) or isinstance(sent, bool):
                raise bad_request(
                    "json: cannot unmarshal into Go struct field DeleteOptions.gracePeriodSeconds "
                    "of type int64"
                )
            grace = sent
        if isinstance(body.get("preconditions"), dict):
            preconditions = body["preconditions"]
        sent_dry = body.get("dryRun")
        if isinstance(sent_dry, list) and sent_dry:
            dry = _check_dry_run([str(v) for v in sent_dry])
    return grace, preconditions, dry


def dry_run(request: web.Request) -> bool:
    return _check_dry_run(request.query.getall("dryRun", []))


def _check_dry_run(values: list[str]) -> bool:
    for value in values:
        if value != "All":
            raise StatusError(
                422, "Invalid", f'dryRun: Unsupported value: "{value}": supported values: "All"'
            )
    return bool(values)


def field_validation(request: web.Request) -> str:
    """Ignore, Warn (the default) or Strict: what to do with unknown fields (`unknown`)."""
    return unknown.parse_mode(request.query.get("fieldValidation"))
