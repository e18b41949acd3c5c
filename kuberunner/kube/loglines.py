"""Splitting streamed bytes into lines ourselves, with every buffer bounded, free of I/O.

aiohttp's line reader fails on lines over its buffer (`LineTooLong` at 4 MiB) and CRI lines can be
longer, so the log follower and the pod watcher feed raw chunks here instead:

- `TimestampedLineSplitter` reads `pods/log?timestamps=true` bodies (`<RFC3339Nano> <content>\\n`):
  it yields one `LogRecord` per line, and cuts a line longer than `max_line` into incomplete
  records that share the line's timestamp, so memory stays bounded whatever the job prints.
- `LineSplitter` cuts newline-delimited JSON (watch events); a line over its bound is an error,
  because half a JSON object is useless.
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC3339Nano with a zone offset is 35 bytes; anything much longer before the first space is not a
# timestamp, and the line is passed on as content rather than held back.
_MAX_TIMESTAMP = 64


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One line, or one piece of an over-long line.

    `content` never includes the newline; `complete` is True for the piece that ended with one.
    `timestamp` is "" when the line did not start with a timestamp token.
    """

    timestamp: str
    content: bytes
    complete: bool


class TimestampedLineSplitter:
    """Feed body chunks; get back the records they complete. Holds at most about `max_line` bytes."""

    def __init__(self, *, max_line: int = 1 << 20) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self._max_line = max_line
        self._head = bytearray()  # the timestamp token being read
        self._ts: str | None = None  # None while the current line's timestamp is still unread
        self._buf = bytearray()  # content of the current line not yet emitted

    def feed(self, data: bytes) -> list[LogRecord]:
        out: list[LogRecord] = []
        pos, end = 0, len(data)
        while pos < end:
            if self._ts is None:
                pos = self._read_timestamp(data, pos, out)
                continue
            nl = data.find(b"\n", pos)
            stop = end if nl == -1 else nl
            self._buf += data[pos:stop]
            self._cut_long(out)
            if nl == -1:
                pos = end
            else:
                out.append(LogRecord(self._ts, bytes(self._buf), True))
                self._buf.clear()
                self._ts = None
                pos = nl + 1
        return out

    def flush(self) -> list[LogRecord]:
        """At end of stream: whatever is left, as an incomplete record."""
        out: list[LogRecord] = []
        if self._ts is None and self._head:
            out.append(LogRecord("", bytes(self._head), False))
        elif self._ts is not None and (self._buf or self._ts):
            out.append(LogRecord(self._ts, bytes(self._buf), False))
        self._head.clear()
        self._buf.clear()
        self._ts = None
        return out

    def _read_timestamp(self, data: bytes, pos: int, out: list[LogRecord]) -> int:
        window_end = min(len(data), pos + _MAX_TIMESTAMP + 1 - len(self._head))
        sp = data.find(b" ", pos, window_end)
        nl = data.find(b"\n", pos, window_end)
        hits = [i for i in (sp, nl) if i != -1]
        if not hits:
            self._head += data[pos:window_end]
            if len(self._head) > _MAX_TIMESTAMP:
                self._start_untimed()
            return window_end
        stop = min(hits)
        self._head += data[pos:stop]
        if stop == nl:
            # A line with no space: not in the timestamped form; keep its bytes as content.
            out.append(LogRecord("", bytes(self._head), True))
            self._head.clear()
            return stop + 1
        self._ts = self._head.decode("ascii", errors="replace")
        self._head.clear()
        return stop + 1

    def _start_untimed(self) -> None:
        self._ts = ""
        self._buf += self._head
        self._head.clear()

    def _cut_long(self, out: list[LogRecord]) -> None:
        assert self._ts is not None
        while len(self._buf) > self._max_line:
            out.append(LogRecord(self._ts, bytes(self._buf[: self._max_line]), False))
            del self._buf[: self._max_line]


class LineTooLong(ValueError):
    pass


class LineSplitter:
    """Newline-delimited records (watch events), each at most `max_line` bytes."""

    def __init__(self, *, max_line: int = 16 << 20) -> None:
        self._max_line = max_line
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        pos = 0
        while True:
            nl = data.find(b"\n", pos)
            if nl == -1:
                self._buf += data[pos:]
                if len(self._buf) > self._max_line:
                    raise LineTooLong(f"line longer than {self._max_line} bytes")
                return lines
            self._buf += data[pos:nl]
            if len(self._buf) > self._max_line:
                raise LineTooLong(f"line longer than {self._max_line} bytes")
            lines.append(bytes(self._buf))
            self._buf.clear()
            pos = nl + 1

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)
