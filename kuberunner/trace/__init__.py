"""The job log: the job's bytes passed through exactly, the runner's own lines, masking and a size limit.

Everything that is shown to a user (terminal, trace file, later GitLab's trace API) goes through one
`Trace`, so that a masked value can never slip out through one sink only, and so that the size limit
and the "a runner line starts on a new line" rule hold for all of them alike. The trace is
synchronous and does no I/O of its own: sinks do (`sinks`), and the executor decides when to call
it. Masking is `masking`'s: at most (longest masked value - 1) bytes are held back.

A sink that fails (a full disk, a closed stdout) is dropped at once, the others keep getting every
byte, and the failure is reported to whoever listens (`on_failure`): the executor ends the job as a
system failure. No sink error ever escapes a `Trace` call, so the job flow can always go on to
delete the pod.

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
from types import TracebackType
from typing import Literal

from kuberunner.trace.masking import MASK, Masker
from kuberunner.trace.sinks import FileSink, Sink, SinkError, StreamSink

__all__ = [
    "MASK",
    "FileSink",
    "Level",
    "Masker",
    "Sink",
    "SinkError",
    "StreamSink",
    "Trace",
    "limit_notice",
]

Level = Literal["info", "success", "warning", "error"]

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


class Trace:
    """One job's log, written to every sink added; see the module docstring."""

    def __init__(
        self,
        *,
        color: bool = False,
        masked: Iterable[str] = (),
        output_limit: int | None = None,
        clock: Callable[[], float] = time.time,
        at_line_start: bool = True,
        job_bytes: int = 0,
    ) -> None:
        """`output_limit` is in bytes of job output (config.toml's KiB times 1024); None: no limit.
        `clock` gives the Unix time stamped on section markers (tests fix it). `at_line_start` and
        `job_bytes` continue a trace another process began (a restarted runner taking a job over)."""
        self._color = color
        self._clock = clock
        self._masker = Masker(masked)
        self._limit = output_limit
        self._sinks: list[Sink] = []
        self._failed: list[Sink] = []
        self._failure: str | None = None
        self._listeners: list[Callable[[str], None]] = []
        self._job_bytes = job_bytes
        self._truncated = False
        self._at_line_start = at_line_start

    @property
    def truncated(self) -> bool:
        """True once job output went past `output_limit` and further output is dropped."""
        return self._truncated

    @property
    def job_bytes_written(self) -> int:
        """Bytes of job output written to the sinks, after masking (runner lines not counted)."""
        return self._job_bytes

    @property
    def held(self) -> int:
        """Job output bytes held back for masking, not yet written to any sink."""
        return self._masker.held

    @property
    def at_line_start(self) -> bool:
        """True when the next runner line needs no newline first."""
        return self._at_line_start

    @property
    def failure(self) -> str | None:
        """Why the first sink that failed did, naming it; None while every sink takes its bytes."""
        return self._failure

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def on_failure(self, listener: Callable[[str], None]) -> None:
        """Call `listener(reason)` when a sink fails (at once if one already has)."""
        self._listeners.append(listener)
        if self._failure is not None:
            listener(self._failure)

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
        """Flush and close every sink, the failed ones too (to release their files)."""
        self.flush()
        for sink in [*self._sinks, *self._failed]:
            try:
                sink.close()
            except (SinkError, OSError) as exc:
                if sink in self._sinks:
                    self._sink_failed(sink, exc)
        self._sinks.clear()
        self._failed.clear()

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
        for sink in list(self._sinks):
            try:
                sink.write(data)
            except (SinkError, OSError) as exc:
                self._sink_failed(sink, exc)
        self._at_line_start = data.endswith(b"\n")

    def _sink_failed(self, sink: Sink, exc: Exception) -> None:
        self._sinks.remove(sink)
        self._failed.append(sink)
        if self._failure is not None:
            return
        # Our sinks name themselves; a foreign one (any OSError) is named by its type.
        what = str(exc) if isinstance(exc, SinkError) else f"{type(sink).__name__}: {exc}"
        self._failure = f"writing the job log failed: {what}"
        for listener in self._listeners:
            listener(self._failure)
