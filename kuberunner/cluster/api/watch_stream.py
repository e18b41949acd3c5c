"""The HTTP side of a watch: a chunked `application/json` body of one event per line.

Handles the three ways a watch starts: from the current state (synthetic ADDED events first,
resourceVersion unset or "0"), from a resourceVersion (replay from the store's history, or one
ERROR event with a 410 Expired Status inside a 200 when it is too old), and the watch-list form that
kubectl 1.37 uses (`sendInitialEvents=true&resourceVersionMatch=NotOlderThan`): the initial ADDED
events end with a BOOKMARK annotated `k8s.io/initial-events-end`, without which that client waits
forever. The stream ends after `timeoutSeconds`, when the client goes away, or at shutdown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from typing import Any

from aiohttp import web

from kuberunner.cluster.api import requests, tables
from kuberunner.cluster.api.kinds import RESOURCES
from kuberunner.cluster.api.state import ApiState
from kuberunner.cluster.api.watch import Expired, Subscription
from kuberunner.cluster.status import StatusError, failure_body

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
"""How often an idle watch looks for a vanished client (aiohttp does not cancel handlers)."""
DEFAULT_SECONDS = (1800, 3600)
"""Without timeoutSeconds the real server ends a watch after 30-60 minutes; clients re-watch."""
INITIAL_EVENTS_END = "k8s.io/initial-events-end"

Encoder = Callable[[str, dict[str, Any]], bytes]


def _invalid(field: str, detail: str) -> StatusError:
    return StatusError(
        422,
        "Invalid",
        f'ListOptions.meta.k8s.io "" is invalid: {field}: Forbidden: {detail}',
        {
            "kind": "ListOptions",
            "group": "meta.k8s.io",
            "causes": [{"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}", "field": field}],
        },
    )


async def serve(
    request: web.Request, state: ApiState, resource: str, namespace: str | None
) -> web.StreamResponse:
    labels, fields = requests.selectors(request, resource)
    since = requests.resource_version(request)
    bookmarks = requests.query_bool(request, "allowWatchBookmarks")
    initial_events: bool | None = None
    if request.query.get("sendInitialEvents", "") != "":
        initial_events = requests.query_bool(request, "sendInitialEvents")
        if request.query.get("resourceVersionMatch") != "NotOlderThan":
            raise _invalid(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )
        if initial_events and not bookmarks:
            raise _invalid(
                "allowWatchBookmarks", "sendInitialEvents requires setting allowWatchBookmarks to true"
            )
    if initial_events:
        since = None
    elif initial_events is False and since is None:
        since = state.store.resource_version
    seconds = requests.query_int(request, "timeoutSeconds")
    if seconds is None or seconds <= 0:
        seconds = random.randint(*DEFAULT_SECONDS)
    as_table = tables.wants_table(request.headers.get("Accept", ""))
    include = request.query.get("includeObject", "Metadata")
    first = [True]

    def encode(type_: str, obj: dict[str, Any]) -> bytes:
        shown = obj
        if as_table:
            shown = tables.table(
                resource,
                [obj],
                resource_version=obj["metadata"]["resourceVersion"],
                include_object=include,
                with_columns=first[0],
            )
            first[0] = False
        return json.dumps({"type": type_, "object": shown}).encode() + b"\n"

    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    try:
        initial, sub = state.store.watch(resource, namespace, labels=labels, fields=fields, since=since)
    except Expired as exc:
        await response.prepare(request)
        error = failure_body(410, "Expired", str(exc))
        await response.write(json.dumps({"type": "ERROR", "object": error}).encode() + b"\n")
        await response.write_eof()
        return response
    await response.prepare(request)
    try:
        for obj in initial:
            await response.write(encode("ADDED", obj))
        if initial_events:
            await response.write(_bookmark(resource, state.store.resource_version, as_table))
        await _pump(request, response, sub, seconds, encode)
        await response.write_eof()
    except ConnectionResetError:
        log.debug("watch client went away")
    finally:
        state.store.unwatch(sub)
    return response


def _bookmark(resource: str, rv: int, as_table: bool) -> bytes:
    meta = {"resourceVersion": str(rv), "annotations": {INITIAL_EVENTS_END: "true"}}
    if as_table:
        obj: dict[str, Any] = {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(rv)},
            "columnDefinitions": [],
            "rows": [
                {
                    "cells": [],
                    "object": {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": meta,
                    },
                }
            ],
        }
    else:
        obj = {"kind": RESOURCES[resource].kind, "apiVersion": "v1", "metadata": meta}
    return json.dumps({"type": "BOOKMARK", "object": obj}).encode() + b"\n"


async def _pump(
    request: web.Request, response: web.StreamResponse, sub: Subscription, seconds: float, encode: Encoder
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        try:
            event = await asyncio.wait_for(sub.next(), timeout=min(remaining, POLL_SECONDS))
        except TimeoutError:
            if request.transport is None or request.transport.is_closing():
                return
            continue
        if event is None:
            return
        await response.write(encode(event.type, event.object))
