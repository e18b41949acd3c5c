"""The job log: the job's bytes passed through exactly, the runner's own lines, masking and a size limit.

Everything that is shown to a user (terminal, trace file, later GitLab's trace API) goes through one
`Trace`, so that a masked value can never slip out through one sink only, and so that the size limit
and the "a runner line starts on a new line" rule hold for all of them alike. The trace is
synchronous and does no I/O of its own: sinks do, and the executor decides when to call it. Memory
stays bounded whatever the job prints: at most (longest masked value - 1) bytes are held back.

Runner lines take their colour from `level` (GitLab Runner's colours); the text is written as given,
so a caller writes "ERROR: Job failed: exit code 3" itself.

Sections (GitLab's collapsible stages) are in-band: `section_start:<unix seconds>:<name>\r\x1b[0K`
opens the header line, `section_end:<unix seconds>:<name>\r\x1b[0K` follows the stage's output on a
line of its own. A terminal shows neither (the carriage return and erase-line hide them), so the line
that follows a marker continues right after it, as in GitLab Runner's traces.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, Protocol

from kuberunner.errors import BadInput

Level = Literal["info", "success", "warning", "error"]

MASK = b"[MASKED]"

_COLORS: dict[str, bytes] = {
    "info": b"",
    "success": b"\x1b[32;1m",
    "warning": b"\x1b[0;33m",
    "error": b"\x1b[31;1m",
}
_RESET = b"\x1b[0;m"
_ERASE_LINE = b"\r\x1b[0K"
_SECTION_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def limit_notice(limit: int) -> str:
    """GitLab Runner's words when a job's log outgrows `output_limit`."""
    return (
        f"Job's log exceeded limit of {limit} bytes.\n"
        "Job execution will continue but no more output will be collected."
    )


class Sink(Protocol):
    """Where trace bytes go; `write` gets every byte once, in order."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class StreamSink:
    """A binary stream such as `sys.stdout.buffer`, flushed on every write so output is live."""

    def __init__(self, stream: BinaryIO, *, close_stream: bool = False) -> None:
        self._stream = stream
        self._close_stream = close_stream
        self._broken = False

    def write(self, data: bytes) -> None:
        if self._broken:
            return
        try:
            self._stream.write(data)
            self._stream.flush()
        except BrokenPipeError:
            # `kuberunner exec | head` must not fail the job; the other sinks still get everything.
            self._broken = True

    def close(self) -> None:
        if self._close_stream:
            self._stream.close()
        elif not self._broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._broken = True


class FileSink:
    """A trace file, created or truncated; flushed on every write so it can be followed live."""

    def __init__(self, path: Path) -> None:
        """BadInput if the file cannot be created: the path came from the user (`--trace-file`)."""
        try:
            self._file = path.open("wb")
        except OSError as exc:
            raise BadInput(f"{path}: cannot write the trace file: {exc.strerror or exc}") from exc

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class Masker:
    """Replaces masked values in a byte stream, also when a value is split across chunks (sans-I/O).

    A value matches where the whole stream (not each chunk) holds it; when several values start at
    the same place, the longest wins. `feed` returns what is safe to show now and holds back the
    shortest tail that may still become a masked value — never more than (longest value - 1) bytes.
    """

    def __init__(self, values: Iterable[str]) -> None:
        encoded = sorted({v.encode("utf-8", "surrogateescape") for v in values if v}, key=len, reverse=True)
        self._longest = len(encoded[0]) if encoded else 0
        # Longest first, so at one position the regex prefers the longest value.
        self._pattern = re.compile(b"|".join(re.escape(v) for v in encoded)) if encoded else None
        self._prefixes = frozenset(v[:n] for v in encoded for n in range(1, len(v)))
        self._held = b""

    @property
    def held(self) -> int:
        return len(self._held)

    def feed(self, data: bytes) -> bytes:
        if self._pattern is None:
            return data
        buffer = self._held + data
        self._held = b""
        size = len(buffer)
        # From here on, a value starting at a position might not fit in the buffer yet.
        undecided = max(0, size - (self._longest - 1))
        out: list[bytes] = []
        position = 0
        for found in self._pattern.finditer(buffer):
            if found.start() >= undecided:
                break
            out += (buffer[position : found.start()], MASK)
            position = found.end()
        scan = max(position, undecided)
        out.append(buffer[position:scan])
        position = scan
        while scan < size:
            if buffer[scan:] in self._prefixes:
                self._held = buffer[scan:]
                break
            match = self._pattern.match(buffer, scan)
            if match is None:
                scan += 1
                continue
            out += (buffer[position:scan], MASK)
            position = scan = match.end()
        out.append(buffer[position : size - len(self._held)])
        return b"".join(out)

    def flush(self) -> bytes:
        """The held tail, masked as the end of the stream; nothing is held afterwards."""
        held, self._held = self._held, b""
        return self.mask(held)

    def discard(self) -> None:
        self._held = b""

    def mask(self, data: bytes) -> bytes:
        """Mask a complete piece of text, such as a runner line."""
        return self._pattern.sub(MASK, data) if self._pattern is not None else data


class Trace:
    """One job's log, written to every sink added; see the module docstring."""

    def __init__(
        self,
        *,
        color: bool = False,
        masked: Iterable[str] = (),
        output_limit: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`output_limit` is in bytes of job output (config.toml's KiB times 1024); None: no limit.
        `clock` gives the Unix time stamped on section markers (tests fix it)."""
        self._color = color
        self._clock = clock
        self._masker = Masker(masked)
        self._limit = output_limit
        self._sinks: list[Sink] = []
        self._job_bytes = 0
        self._truncated = False
        self._at_line_start = True

    @property
    def truncated(self) -> bool:
        """True once job output went past `output_limit` and further output is dropped."""
        return self._truncated

    @property
    def job_bytes_written(self) -> int:
        """Bytes of job output written to the sinks, after masking (runner lines not counted)."""
        return self._job_bytes

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def job_output(self, data: bytes) -> None:
        """Bytes the job wrote: shown exactly, but masked (a tail may wait for the next call or flush)."""
        if self._truncated or not data:
            return
        self._emit_job(self._masker.feed(data))

    def flush(self) -> None:
        """Release the bytes held back for masking; they cannot be part of a value any more."""
        if self._truncated:
            self._masker.discard()
            return
        self._emit_job(self._masker.flush())

    def runner_line(self, text: str, *, level: Level = "info") -> None:
        """A line of the runner's own, always starting on a new line, coloured by level if enabled."""
        self.flush()
        self._line(text, level)

    def section_start(self, name: str, header: str, *, level: Level = "info") -> None:
        """Open section `name` (GitLab folds it in its UI) with `header` as its first, runner line."""
        self.flush()
        self._section_marker("section_start", name)
        self._line(header, level)

    def section_end(self, name: str) -> None:
        """Close section `name` after everything its stage wrote, on a new line like any runner line."""
        self.flush()
        self._section_marker("section_end", name)

    def close(self) -> None:
        self.flush()
        for sink in self._sinks:
            sink.close()

    def __enter__(self) -> Trace:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _emit_job(self, data: bytes) -> None:
        if not data:
            return
        if self._limit is not None and self._job_bytes + len(data) > self._limit:
            room = self._limit - self._job_bytes
            if room > 0:
                self._write(data[:room])
                self._job_bytes += room
            self._truncated = True
            self._masker.discard()
            self._line(limit_notice(self._limit), "warning")
            return
        self._write(data)
        self._job_bytes += len(data)

    def _line(self, text: str, level: Level) -> None:
        body = self._masker.mask(text.encode("utf-8", "replace"))
        color = _COLORS[level] if self._color else b""
        reset = _RESET if color else b""
        newline_first = b"" if self._at_line_start else b"\n"
        self._write(newline_first + color + body + reset + b"\n")

    def _section_marker(self, kind: str, name: str) -> None:
        if not _SECTION_NAME.fullmatch(name):
            raise ValueError(f"section names are [A-Za-z0-9_.-]+, not {name!r}")
        newline_first = b"" if self._at_line_start else b"\n"
        self._write(newline_first + f"{kind}:{int(self._clock())}:{name}".encode() + _ERASE_LINE)
        # The marker hides itself, so what follows it still starts its line.
        self._at_line_start = True

    def _write(self, data: bytes) -> None:
        for sink in self._sinks:
            sink.write(data)
        self._at_line_start = data.endswith(b"\n")
