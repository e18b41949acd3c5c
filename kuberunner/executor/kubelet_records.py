"""Parses a `pods/log?timestamps=true` body back into the container's lines (sans-I/O).

The kubelet puts a timestamp only at the start of a logical line: when the runtime split a long line
into partial (`P`) records of 16 KiB, the pieces after the first come with no timestamp and no
separator, so the body reads `TS1 <the whole line>\\n` whatever its length. A line is therefore
known by the timestamp of its first piece and ends at its newline.

Two consequences shape this module. A line without a newline yet can be any length, so the parser
hands out a long open line in fragments (`Record.start` is where a fragment sits in its line) rather
than holding it. And the kubelet filters `sinceTime` per piece but decides "new line" from the piece
before, filtered or not: a resumed stream can begin with the headless tail of a line whose first
piece was older than `sinceTime`. That tail belongs to a line already delivered, so it is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPEN_LINE_LIMIT = 65536
"""Bytes of a line without its newline yet that the parser holds before handing them out."""

_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d) ")
_MAX_HEADER = 40


class MalformedLog(Exception):
    """The body is not timestamped lines (a proxy's error page, a server that ignored timestamps)."""


@dataclass(frozen=True, slots=True)
class Record:
    timestamp: str
    """RFC3339Nano of the line's first piece, nine fraction digits: lines compare in time order as strings."""
    data: bytes
    """Bytes the container wrote; a fragment of an open line has no newline."""
    start: int = 0
    """Offset of `data` in its line: 0 for a line's beginning, more for a later fragment."""


class RecordParser:
    """Feed body chunks, get the lines (and fragments of long open lines) they complete."""

    def __init__(self, *, open_line_limit: int = OPEN_LINE_LIMIT) -> None:
        self._limit = open_line_limit
        self._buffer = bytearray()
        self._timestamp: str | None = None  # of the line being read, None between lines
        self._position = 0
        self._headless_possible = False
        self._dropping = False

    def reset(self, *, resuming: bool = False) -> None:
        """A new stream begins (at a `sinceTime` when `resuming`): forget a line cut off by the old one."""
        self._buffer.clear()
        self._timestamp, self._position = None, 0
        self._headless_possible, self._dropping = resuming, False

    def feed(self, data: bytes) -> list[Record]:
        self._buffer += data
        records: list[Record] = []
        while self._buffer:
            if self._dropping:
                newline = self._buffer.find(b"\n")
                if newline < 0:
                    self._buffer.clear()
                    break
                del self._buffer[: newline + 1]
                self._dropping = False
                continue
            if self._timestamp is None and not self._start_line():
                if self._dropping:
                    continue
                break
            record = self._take_line()
            if record is None:
                break
            records.append(record)
        return records

    def flush(self) -> list[Record]:
        """The stream ended cleanly: what is left of an open line comes out (no newline follows)."""
        # Short enough that `feed` waited for more: a line of its own, or a headless tail.
        waiting = self._timestamp is None and self._buffer and not self._dropping
        if waiting and not self._read_header() and not self._dropping:
            raise MalformedLog(f"log body ends inside a timestamp: {bytes(self._buffer[:60])!r}")
        records = [self._fragment(len(self._buffer))] if self._timestamp and self._buffer else []
        self._buffer.clear()
        return records

    def _start_line(self) -> bool:
        incomplete = len(self._buffer) < _MAX_HEADER and b"\n" not in self._buffer
        if incomplete and not _TIMESTAMP.match(self._buffer):
            return False  # the timestamp may not have fully arrived
        return self._read_header()

    def _read_header(self) -> bool:
        buffer = self._buffer
        match = _TIMESTAMP.match(buffer)
        if match is None:
            if self._headless_possible:
                self._headless_possible, self._dropping = False, True
                return False
            raise MalformedLog(f"expected a timestamp, got {bytes(buffer[:60])!r}")
        self._headless_possible = False
        self._timestamp, self._position = match.group()[:-1].decode("ascii"), 0
        del buffer[: match.end()]
        return True

    def _take_line(self) -> Record | None:
        newline = self._buffer.find(b"\n")
        if newline >= 0:
            record = self._fragment(newline + 1)
            self._timestamp = None
            return record
        if len(self._buffer) >= self._limit:
            return self._fragment(len(self._buffer))
        return None

    def _fragment(self, size: int) -> Record:
        assert self._timestamp is not None
        record = Record(self._timestamp, bytes(self._buffer[:size]), self._position)
        del self._buffer[:size]
        self._position += size
        return record


@dataclass(slots=True)
class ResumePoint:
    """Where a reader stands: the last line's timestamp, how many lines carried it, and how much of
    the last line was delivered while it had no newline yet.

    `sinceTime` is truncated to whole seconds by the API server, so a reconnect gets the lines of
    that second again; these counts tell which bytes of them were already delivered.
    """

    timestamp: str = ""
    seen_at_timestamp: int = 0
    open_bytes: int = 0
    _skipping_at: str = ""
    _to_skip: int = 0
    _skip_open: int = 0
    _line_skip: int = 0  # bytes of the current line already delivered (-1: all of it)
    _gap: bool = False

    def gap_possible(self) -> bool:
        """Whether a resumed stream went past where the last one stopped without showing its last
        line again (asked once: the answer resets). The kubelet serves only the current log file,
        so the lines after that point may have been rotated away unread."""
        gap, self._gap = self._gap, False
        return gap

    def stream_ended(self) -> None:
        """The stream ended or went idle: one that never came back to the last line is a gap too."""
        if self._skipping_at:
            self._gap = True

    def since_time(self) -> str | None:
        """The `sinceTime` to ask for: the last line's second (None before any line)."""
        if not self.timestamp:
            return None
        return self.timestamp[:19] + "Z"

    def at_line_start(self) -> tuple[str, int]:
        """(timestamp, lines) for a reader that keeps no `open_bytes` (a runner adopting the job):
        a line still open is left uncounted, so it comes again whole rather than its rest never."""
        return self.timestamp, self.seen_at_timestamp - (1 if self.open_bytes else 0)

    def restart(self) -> None:
        """A new stream is about to start at `since_time()`."""
        self._skipping_at, self._to_skip = self.timestamp, self.seen_at_timestamp
        self._skip_open, self._line_skip = self.open_bytes, 0

    def take(self, record: Record) -> bytes:
        """The bytes of `record` not delivered before; records arrive in order."""
        if record.start == 0:
            self._begin_line(record.timestamp)
        ends = record.data.endswith(b"\n")
        if self._line_skip < 0:
            return b""
        skip, self._line_skip = self._line_skip, 0
        fresh = record.data[max(0, skip - record.start) :]
        self.open_bytes = 0 if ends else record.start + len(record.data)
        if not ends and skip > record.start + len(record.data):
            self._line_skip = skip  # still inside the part delivered before
        return fresh

    def _begin_line(self, timestamp: str) -> None:
        if self._skipping_at:
            if timestamp < self._skipping_at:
                self._line_skip = -1
                return
            if timestamp == self._skipping_at and self._to_skip > 1:
                self._to_skip -= 1
                self._line_skip = -1
                return
            if timestamp == self._skipping_at and self._to_skip == 1:
                # The last line seen: repeated whole, or its delivered part is skipped.
                self._skipping_at, self._to_skip = "", 0
                self._line_skip = self._skip_open if self._skip_open else -1
                return
            self._skipping_at, self._gap = "", True
        self._line_skip = 0
        if timestamp == self.timestamp:
            self.seen_at_timestamp += 1
        else:
            self.timestamp, self.seen_at_timestamp = timestamp, 1
        self.open_bytes = 0
