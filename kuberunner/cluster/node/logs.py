"""`GET .../pods/{name}/log`: PodLogOptions, the kubelet's 400/422/204 answers, and the CRI reader.

The rules are the kubelet's (k8s-protocol.md §2.2): the since filter is inclusive and sinceTime counts
whole seconds, tailLines counts CRI records, limitBytes counts prefixed output bytes, P records lose
their terminator, and a follow ends once the container has stopped and its file is drained. The
runtime owns the file; this module only reads it, woken by `LogSource.wait_changed`.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from aiohttp import web

from kuberunner.cluster.contracts import RawObject
from kuberunner.cluster.node.crilog import format_rfc3339nano_fixed, parse_record, parse_rfc3339
from kuberunner.cluster.status import StatusError, bad_request, invalid

MAX_RECORD = 1024 * 1024
"""A record longer than this (never written by our runtime) is cut rather than buffered further."""
FOLLOW_RECHECK_SECONDS = 1.0
"""Like the kubelet, re-check the container state this often even without a write notification."""


class LogSource(Protocol):
    path: Path
    closed: bool

    async def wait_changed(self, max_wait: float) -> None: ...


LogLookup = Callable[[str, int], LogSource | None]
"""(container name, instances back from the newest started one) -> that instance's log, or None."""


@dataclass(frozen=True, slots=True)
class LogOptions:
    container: str | None
    follow: bool
    previous: bool
    timestamps: bool
    since_ns: int | None
    tail_lines: int | None
    limit_bytes: int | None
    stream: str


def parse_bool(name: str, text: str) -> bool:
    """Go's strconv.ParseBool, as the API server decodes query booleans."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise bad_request(f'strconv.ParseBool: parsing "{text}": invalid syntax for {name}')


def _int(query: dict[str, str], name: str) -> int | None:
    if name not in query:
        return None
    try:
        return int(query[name])
    except ValueError:
        raise bad_request(f'strconv.ParseInt: parsing "{query[name]}": invalid syntax for {name}') from None


def parse_options(query: dict[str, str], pod_name: str, now_ns: int) -> LogOptions:
    def flag(name: str) -> bool:
        return parse_bool(name, query[name]) if name in query else False

    since_seconds, tail, limit = (
        _int(query, "sinceSeconds"),
        _int(query, "tailLines"),
        _int(query, "limitBytes"),
    )
    since_time: int | None = None
    if "sinceTime" in query:
        try:
            since_time = parse_rfc3339(query["sinceTime"])
        except ValueError:
            raise bad_request(f'parsing time "{query["sinceTime"]}" as RFC3339: cannot parse') from None
        since_time -= since_time % 1_000_000_000
    stream = query.get("stream", "All")
    causes: list[dict[str, str]] = []
    if since_seconds is not None and since_time is not None:
        raise StatusError(
            422,
            "Invalid",
            f'PodLogOptions "{pod_name}" is invalid: []: Forbidden: at most one of `sinceTime` or '
            "`sinceSeconds` may be specified",
            {
                "name": pod_name,
                "kind": "PodLogOptions",
                "causes": [
                    {
                        "reason": "FieldValueForbidden",
                        "field": "",
                        "message": "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
                    }
                ],
            },
        )
    if since_seconds is not None and since_seconds < 1:
        causes.append(_cause("sinceSeconds", since_seconds, "must be greater than 0"))
    if tail is not None and tail < 0:
        causes.append(_cause("tailLines", tail, "must be greater than or equal to 0"))
    if limit is not None and limit < 1:
        causes.append(_cause("limitBytes", limit, "must be greater than 0"))
    if stream not in ("All", "Stdout", "Stderr"):
        causes.append(
            {
                "reason": "FieldValueNotSupported",
                "field": "stream",
                "message": f'Unsupported value: "{stream}": supported values: "All", "Stdout", "Stderr"',
            }
        )
    elif stream != "All" and tail is not None:
        causes.append(
            {
                "reason": "FieldValueForbidden",
                "field": "tailLines",
                "message": "Forbidden: `tailLines` and specific `stream` are mutually exclusive",
            }
        )
    if causes:
        raise invalid("PodLogOptions", pod_name, causes)
    since = since_time
    if since_seconds is not None:
        since = now_ns - since_seconds * 1_000_000_000
    return LogOptions(
        container=query.get("container") or None,
        follow=flag("follow"),
        previous=flag("previous"),
        timestamps=flag("timestamps"),
        since_ns=since,
        tail_lines=tail,
        limit_bytes=limit,
        stream=stream,
    )


def _cause(field: str, value: int, message: str) -> dict[str, str]:
    return {"reason": "FieldValueInvalid", "field": field, "message": f"Invalid value: {value}: {message}"}


def select_container(pod: RawObject, wanted: str | None) -> str:
    """The container a log/attach/exec request means; 400 as the API server words it."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    names = [str(c.get("name")) for c in spec.get("containers") or []]
    all_names = names + [str(c.get("name")) for c in spec.get("initContainers") or []]
    if wanted:
        if wanted not in all_names:
            raise bad_request(f"container {wanted} is not valid for pod {name}")
        return wanted
    if len(names) == 1:
        return names[0]
    raise bad_request(
        f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
    )


def check_log_status(pod: RawObject, container: str, previous: bool) -> int:
    """The kubelet's validateContainerLogStatus: which instance to read, counted back from the
    newest one that started (0 or 1), or its error text. A container waiting to restart
    (CrashLoopBackOff) or whose restart failed to start answers with its last run."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    statuses = (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
    found = next((s for s in statuses if s.get("name") == container), None)
    if found is None:
        raise bad_request(f'container "{container}" in pod "{name}" is not available')
    state = found.get("state") or {}
    last_run = bool(((found.get("lastState") or {}).get("terminated") or {}).get("containerID"))
    current_started = "running" in state or bool((state.get("terminated") or {}).get("containerID"))
    if previous:
        if not last_run:
            raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        return 1 if current_started else 0
    if current_started or last_run:
        return 0
    if "terminated" in state:
        raise bad_request(f'container "{container}" in pod "{name}" is terminated')
    if "waiting" in state:
        reason = (state["waiting"] or {}).get("reason", "")
        if reason == "ErrImagePull":
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: image can\'t be pulled'
            )
        if reason == "ImagePullBackOff":
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: '
                "trying and failing to pull image"
            )
        raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
    raise bad_request(f'container "{container}" in pod "{name}" is waiting to start - no logs yet')


class RecordFilter:
    """Sans-I/O: CRI record lines in, response bytes out, honouring since/stream/timestamps/limitBytes."""

    def __init__(self, options: LogOptions) -> None:
        self._options = options
        self._remaining = options.limit_bytes
        self.done = False
        # As the kubelet does: only the first piece of a line the runtime split carries a timestamp,
        # and a piece continues a line even when the pieces before it were filtered out.
        self._line_start = True

    def render(self, line: bytes) -> bytes:
        record = parse_record(line)
        if record is None or self.done:
            return b""
        head, self._line_start = self._line_start, not record.partial
        opts = self._options
        if opts.since_ns is not None and record.ts_ns < opts.since_ns:
            return b""
        if opts.stream != "All" and record.stream != opts.stream.lower():
            return b""
        out = record.content if record.partial else record.content + b"\n"
        if opts.timestamps and head:
            out = format_rfc3339nano_fixed(record.ts_ns).encode() + b" " + out
        if self._remaining is not None:
            if len(out) >= self._remaining:
                out = out[: self._remaining]
                self.done = True
            self._remaining -= len(out)
        return out


def tail_offset(file: BinaryIO, lines: int) -> int:
    """Byte offset where the last `lines` records of the file begin."""
    if lines == 0:
        file.seek(0, 2)
        return file.tell()
    starts: collections.deque[int] = collections.deque(maxlen=lines)
    file.seek(0)
    offset = 0
    for line in file:
        starts.append(offset)
        offset += len(line)
    return starts[0] if starts else 0


async def stream_log(request: web.Request, source: LogSource, options: LogOptions) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    record_filter = RecordFilter(options)
    with source.path.open("rb") as file:
        file.seek(tail_offset(file, options.tail_lines) if options.tail_lines is not None else 0)
        pending = b""
        while not record_filter.done:
            closed = source.closed
            chunk = file.read(65536)
            if not chunk:
                if closed or not options.follow:
                    break
                await source.wait_changed(FOLLOW_RECHECK_SECONDS)
                continue
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()
            if len(pending) > MAX_RECORD:
                lines.append(pending)
                pending = b""
            out = b"".join(record_filter.render(line) for line in lines)
            if out:
                try:
                    await response.write(out)
                except (ConnectionError, RuntimeError):
                    return response
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response


async def handle_log(request: web.Request, pod: RawObject, lookup: LogLookup) -> web.StreamResponse:
    query = {k: v for k, v in request.query.items()}
    name = pod["metadata"]["name"]
    options = parse_options(query, name, time.time_ns())
    container = select_container(pod, options.container)
    if not (pod.get("spec") or {}).get("nodeName"):
        return web.Response(status=204)
    back = check_log_status(pod, container, options.previous)
    source = lookup(container, back)
    if source is None:
        if options.previous:
            raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        raise bad_request(f'container "{container}" in pod "{name}" is waiting to start - no logs yet')
    return await stream_log(request, source, options)
