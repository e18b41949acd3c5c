"""Decoding of what a client sends: bodies by content type, query parameters, DeleteOptions.

Every failure is a 4xx `StatusError` whose message names the problem, as the API server's decoders
do; nothing here lets a malformed request reach the store.
"""

from __future__ import annotations

import io
import json
from typing import Any

from aiohttp import web
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from kuberunner.cluster import kinds, protobuf
from kuberunner.cluster.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from kuberunner.cluster.status import StatusError, bad_request

BODY_TYPES = ("application/json", "application/yaml")
PROTOBUF = "application/vnd.kubernetes.protobuf"
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
            return protobuf.decode(resource, await request.read())
        except protobuf.ProtobufError as exc:
            raise bad_request(str(exc)) from exc
    if content_type not in BODY_TYPES:
        raise unsupported_media((*BODY_TYPES, PROTOBUF))
    body = parse_document(await request.read(), content_type)
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
    return content_type, parse_document(await request.read(), content_type)


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


async def delete_options(request: web.Request) -> tuple[int | None, dict[str, Any]]:
    """(gracePeriodSeconds, preconditions) from the query and an optional DeleteOptions body."""
    grace = query_int(request, "gracePeriodSeconds")
    preconditions: dict[str, Any] = {}
    raw = await request.read()
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
    return grace, preconditions


def dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for value in values:
        if value != "All":
            raise StatusError(
                422, "Invalid", f'dryRun: Unsupported value: "{value}": supported values: "All"'
            )
    return bool(values)
