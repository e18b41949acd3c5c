"""The CRI container log format, as containerd writes it and the kubelet reads it (k8s-protocol.md §3).

Pure and sans-I/O: `CriLogWriter` turns pipe bytes into log records, `parse_record` turns a record back
into a `CriRecord`. The runtime owns the file and the pipes; `logs` owns the HTTP semantics.

The writer is where the seed's partial-line quirk comes from: bytes without a newline stay in the
writer's line buffer until a newline arrives, the buffer reaches `max_line` bytes (a `P` record), or the
stream ends (a final `P` record).
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from typing import Literal

Stream = Literal["stdout", "stderr"]
STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")
MAX_LINE = 16 * 1024
"""containerd's `max_container_log_line_size` default."""


@dataclass(frozen=True, slots=True)
class CriRecord:
    """One parsed record. `content` excludes the record terminator."""

    ts_ns: int
    stream: Stream
    partial: bool
    content: bytes


class CriLogWriter:
    """Line-buffers each stream separately and renders records, one buffer per stream."""

    def __init__(self, *, max_line: int = MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self._max_line = max_line
        self._pending: dict[Stream, bytearray] = {s: bytearray() for s in STREAMS}

    def feed(self, stream: Stream, data: bytes, now_ns: int) -> list[bytes]:
        """Bytes read from `stream` at `now_ns`; returns the complete records to append, in order."""
        buf = self._pending[stream]
        buf += data
        records: list[bytes] = []
        while True:
            newline = buf.find(b"\n")
            if 0 <= newline < self._max_line:
                end = newline - 1 if newline > 0 and buf[newline - 1] == 0x0D else newline
                records.append(render_record(now_ns, stream, False, bytes(buf[:end])))
                del buf[: newline + 1]
            elif len(buf) >= self._max_line:
                records.append(render_record(now_ns, stream, True, bytes(buf[: self._max_line])))
                del buf[: self._max_line]
            else:
                return records

    def close(self, stream: Stream, now_ns: int) -> list[bytes]:
        """The stream hit EOF: flush what is buffered as a final partial record."""
        buf = self._pending[stream]
        if not buf:
            return []
        record = render_record(now_ns, stream, True, bytes(buf))
        buf.clear()
        return [record]


def render_record(ts_ns: int, stream: Stream, partial: bool, content: bytes) -> bytes:
    return b"%s %s %s %s\n" % (
        format_rfc3339nano(ts_ns).encode(),
        stream.encode(),
        b"P" if partial else b"F",
        content,
    )


def format_rfc3339nano(ts_ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped, no fraction when zero."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if nanos == 0:
        return base + "Z"
    return f"{base}.{nanos:09d}".rstrip("0") + "Z"


def format_rfc3339nano_fixed(ts_ns: int) -> str:
    """The kubelet's RFC3339NanoFixed: always nine fractional digits."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def format_rfc3339(ts_ns: int) -> str:
    """Whole-second RFC3339, as timestamps inside API objects."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts_ns // 1_000_000_000))


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch for an RFC3339 time with an optional fraction; ValueError if malformed."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise ValueError(f"not an RFC3339 time: {text!r}")
    fraction = match.group(7) or ""
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    offset = 0
    if match.group(9):
        sign = 1 if match.group(9) == "+" else -1
        offset = sign * (int(match.group(10)) * 3600 + int(match.group(11)) * 60)
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset
    return seconds * 1_000_000_000 + nanos


def parse_record(line: bytes) -> CriRecord | None:
    """One record line (with or without its `\\n`); None when it is not a CRI record."""
    if line.endswith(b"\n"):
        line = line[:-1]
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    try:
        ts_ns = parse_rfc3339(parts[0].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if parts[1] == b"stdout":
        stream: Stream = "stdout"
    elif parts[1] == b"stderr":
        stream = "stderr"
    else:
        return None
    tag = parts[2].split(b":", 1)[0]
    if tag not in (b"P", b"F"):
        return None
    content = parts[3] if len(parts) == 4 else b""
    return CriRecord(ts_ns=ts_ns, stream=stream, partial=tag == b"P", content=content)
