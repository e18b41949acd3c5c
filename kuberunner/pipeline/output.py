"""What a pipeline looks like on one terminal: a header per job, each line of a job prefixed by its
name while several run at once (a colour per job on a terminal), and a summary table at the end.

Plain output (not a terminal, or --no-color) carries no escape codes at all: GitLab's in-band section
markers (`section_start:…\\r\\e[0K`) are removed, leaving their header lines, and colour codes the job
or the runner wrote are stripped. The raw trace, markers and all, is what --trace-file keeps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from kuberunner.pipeline.plan.model import Plan, PlannedJob
from kuberunner.pipeline.scheduler import Outcome, Status

MAX_PARTIAL_LINE = 64 * 1024
"""A job line longer than this is shown in pieces, so one endless line cannot grow memory."""
MAX_HELD_ESCAPE = 64
"""An escape sequence cut by a chunk boundary is held back at most this long."""

_MARKER = re.compile(rb"section_(?:start|end):[0-9]+:[A-Za-z0-9_.-]+\r\x1b\[0K")
_ESCAPE = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[@-Z\\-_])")
_PALETTE = (b"\x1b[36m", b"\x1b[35m", b"\x1b[33m", b"\x1b[34m", b"\x1b[32m", b"\x1b[96m", b"\x1b[95m")
_RESET = b"\x1b[0m"
_BOLD = b"\x1b[1m"
_STATUS_COLOR = {
    Status.PASSED: b"\x1b[32;1m",
    Status.FAILED: b"\x1b[31;1m",
    Status.ALLOWED: b"\x1b[33;1m",
    Status.CANCELED: b"\x1b[31;1m",
}


def plain(data: bytes) -> bytes:
    """`data` without section markers and escape sequences."""
    return _ESCAPE.sub(b"", _MARKER.sub(b"", data))


class Console:
    """The shared terminal (or pipe). `write` raises (a SinkError) when the terminal is gone; a job's
    sink passes that on, so the job ends as a system failure, as with one job."""

    def __init__(
        self, write: Callable[[bytes], None], *, color: bool, prefix: bool, names: Sequence[str]
    ) -> None:
        self._write = write
        self._color = color
        self._prefix = prefix
        self._width = min(max((len(_printable(n)) for n in names), default=0), 40)
        self._colors = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(names)}

    def sink(self, name: str) -> JobSink:
        return JobSink(self, name)

    def header(self, job: PlannedJob) -> None:
        self._line(f"=== {job.name} (stage {job.stage}) ===", _BOLD)

    def ended(self, outcome: Outcome) -> None:
        if outcome.started is None:
            hint = " (not run: name it or pass --manual)" if outcome.status is Status.MANUAL else ""
            self._line(f"=== {outcome.job.name}: {outcome.status.value}{hint} ===")
            return
        took = _seconds(outcome.duration)
        self._line(
            f"=== {outcome.job.name}: {outcome.status.value} in {took} ===",
            _STATUS_COLOR.get(outcome.status, b""),
        )

    def summary(self, outcomes: Sequence[Outcome], exit_status: int) -> None:
        rows = [("JOB", "STAGE", "RESULT", "DURATION")]
        rows += [
            (o.job.name, o.job.stage, o.status.value, _seconds(o.duration) if o.started is not None else "-")
            for o in outcomes
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        self._line("")
        for row in rows:
            self._line("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        failed = sum(o.status is Status.FAILED for o in outcomes)
        if exit_status == 0:
            self._line("Pipeline passed", _STATUS_COLOR[Status.PASSED])
        elif any(o.status is Status.CANCELED for o in outcomes) and not failed:
            self._line("Pipeline canceled", _STATUS_COLOR[Status.CANCELED])
        else:
            self._line(
                f"Pipeline failed ({failed} job{'s' if failed != 1 else ''} failed)",
                _STATUS_COLOR[Status.FAILED],
            )

    def job_line(self, name: str, data: bytes) -> None:
        """Job bytes; with prefixes, `data` is whole lines (each ending in a newline)."""
        # A terminal hides the markers anyway; removed, they cannot erase a prefix with their \r.
        data = _MARKER.sub(b"", data)
        if not self._color:
            data = _ESCAPE.sub(b"", data)
        if self._prefix and data:
            label = _printable(name).ljust(self._width).encode("utf-8", "replace")
            if self._color:
                label = self._colors.get(name, b"") + label + _RESET
            label += b" | "
            # One write for the whole chunk: a prefix after every newline but the last.
            data = label + data[:-1].replace(b"\n", b"\n" + label) + data[-1:]
        self._write(data)

    def _line(self, text: str, color: bytes = b"") -> None:
        body = _printable(text).encode("utf-8", "replace")
        self._write((color + body + _RESET if self._color and color else body) + b"\n")


class JobSink:
    """One job's trace as the console shows it: whole lines when prefixed, else chunks as they come."""

    def __init__(self, console: Console, name: str) -> None:
        self._console = console
        self._name = name
        self._held = b""

    def write(self, data: bytes) -> None:
        data = self._held + data
        self._held = b""
        if self._console._prefix:
            end = data.rfind(b"\n") + 1
            whole, rest = data[:end], data[end:]
            if len(rest) > MAX_PARTIAL_LINE:
                whole, rest = data + b"\n", b""
            if whole:
                self._console.job_line(self._name, whole)
            self._held = rest
            return
        if True:
            cut = _unfinished_escape(data)
            data, self._held = data[:cut], data[cut:]
        if data:
            self._console.job_line(self._name, data)

    def close(self) -> None:
        held, self._held = self._held, b""
        if held:
            self._console.job_line(self._name, held + (b"\n" if self._console._prefix else b""))


def _unfinished_escape(data: bytes) -> int:
    """Where a trailing escape sequence or section marker that is not complete yet starts (else len)."""
    tail_start = max(0, len(data) - MAX_HELD_ESCAPE)
    escape = data.rfind(b"\x1b", tail_start)
    if escape != -1 and _ESCAPE.match(data, escape) is None:
        return escape
    marker = data.rfind(b"section_", tail_start)
    if marker != -1 and b"\x1b[0K" not in data[marker:] and b"\n" not in data[marker:]:
        return marker
    return len(data)


def list_plan(plan: Plan) -> str:
    """`exec --list`: the pipeline without running it, one job a line: stage, job, when, needs."""
    rows = [("STAGE", "JOB", "WHEN", "NEEDS")]
    for job in plan.jobs:
        if job.needs is None:
            needs = "(stage)"
        else:
            needs = ", ".join(n.name + (" (optional)" if n.optional else "") for n in job.needs) or "[]"
        when = job.when + (" (allowed to fail)" if job.allow_failure else "")
        rows.append((job.stage, _printable(job.name), when, _printable(needs)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)), r[3]]) for r in rows]
    if plan.excluded:
        lines.append(f"not in the pipeline (rules, only/except): {', '.join(plan.excluded)}")
    return "\n".join(lines) + "\n"


def _printable(text: str) -> str:
    """Job names come from the file: no control character of theirs reaches the terminal."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}m{seconds:02d}s"
