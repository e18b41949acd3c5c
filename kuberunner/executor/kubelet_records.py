"""Parses a `pods/log?timestamps=true` body back into the container's CRI records (sans-I/O).

The kubelet prefixes every record with its timestamp and strips the newline of partial (`P`)
records, so a line the runtime split at its size limit reads `TS1 <16384 bytes>TS2 rest\\n`: the
only way to find where a partial record ends is its size. A record is therefore complete at its
newline, or after exactly `record_limit` bytes when the next byte starts a new record.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTAINERD_RECORD_LIMIT = 16384
"""containerd's default `max_container_log_line_size`."""

_MAX_TIMESTAMP = 40


class MalformedLog(Exception):
    """The body is not timestamped records (a proxy's error page, a server that ignored timestamps)."""


@dataclass(frozen=True, slots=True)
class Record:
    timestamp: str
    """RFC3339Nano with nine fraction digits, so records compare in time order as strings."""
    data: bytes
    """The bytes the container wrote: content plus "\\n" for a full record, content alone for a partial."""


class RecordParser:
    """Feed body chunks, get the records they complete. Holds at most one record."""

    def __init__(self, *, record_limit: int = CONTAINERD_RECORD_LIMIT) -> None:
        self._limit = record_limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Record]:
        self._buffer += data
        records: list[Record] = []
        while True:
            record, used = self._next()
            if record is None:
                break
            records.append(record)
            del self._buffer[:used]
        return records

    def reset(self) -> None:
        """A new stream begins: forget a record cut off by the old one (it will come again)."""
        self._buffer.clear()

    def flush(self) -> list[Record]:
        """The stream ended cleanly: a trailing record without newline is a final partial one."""
        if not self._buffer:
            return []
        space = self._buffer.find(b" ")
        if space < 0:
            raise MalformedLog(f"log body ends inside a timestamp: {bytes(self._buffer[:60])!r}")
        record = Record(self._buffer[:space].decode("ascii", "replace"), bytes(self._buffer[space + 1 :]))
        self._buffer.clear()
        return [record]

    def _next(self) -> tuple[Record | None, int]:
        buffer = self._buffer
        space = buffer.find(b" ", 0, _MAX_TIMESTAMP + 1)
        if space < 0:
            if len(buffer) > _MAX_TIMESTAMP:
                raise MalformedLog(f"expected a timestamp, got {bytes(buffer[:60])!r}")
            return None, 0
        timestamp = buffer[:space].decode("ascii", "replace")
        start = space + 1
        newline = buffer.find(b"\n", start, start + self._limit + 1)
        if newline >= 0:
            return Record(timestamp, bytes(buffer[start : newline + 1])), newline + 1
        end = start + self._limit
        if len(buffer) <= end:
            return None, 0  # still inside the record, or at its end with the next byte unseen
        return Record(timestamp, bytes(buffer[start:end])), end


@dataclass(slots=True)
class ResumePoint:
    """Where a reader stands: the last record's timestamp and how many records carried it.

    `sinceTime` is truncated to whole seconds by the API server, so a reconnect gets the records
    of that second again; `skip` tells which of them were already delivered.
    """

    timestamp: str = ""
    seen_at_timestamp: int = 0
    _skipping_at: str = ""
    _to_skip: int = 0

    def since_time(self) -> str | None:
        """The `sinceTime` to ask for: the last record's second (None before any record)."""
        if not self.timestamp:
            return None
        return self.timestamp[:19] + "Z"

    def restart(self) -> None:
        """A new stream is about to start at `since_time()`."""
        self._skipping_at, self._to_skip = self.timestamp, self.seen_at_timestamp

    def admit(self, record: Record) -> bool:
        """True when the record is new; records are delivered in order, so older ones are repeats."""
        if self._skipping_at:
            if record.timestamp < self._skipping_at:
                return False
            if record.timestamp == self._skipping_at and self._to_skip > 0:
                self._to_skip -= 1
                return False
            self._skipping_at = ""
        if record.timestamp == self.timestamp:
            self.seen_at_timestamp += 1
        else:
            self.timestamp, self.seen_at_timestamp = record.timestamp, 1
        return True
