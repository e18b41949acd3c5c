"""How a job ended, and the one place that decides it.

Every way a job can end is one of five values. `decide` is the only function that turns what the
executor observed into a result, so no code path can declare success without a 0 marker for every
stage it ran.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Success:
    pass


@dataclass(frozen=True, slots=True)
class ScriptFailure:
    """The job's own script said so, through its exit marker."""

    exit_code: int


@dataclass(frozen=True, slots=True)
class SystemFailure:
    """The cluster, the network or the runner failed; the script's outcome is not what ended the job."""

    reason: str


@dataclass(frozen=True, slots=True)
class TimedOut:
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class Canceled:
    pass


JobResult = Success | ScriptFailure | SystemFailure | TimedOut | Canceled


@dataclass(frozen=True, slots=True)
class Observation:
    """What the executor saw of the user stages (get_sources and step_script; not after_script)."""

    exit_codes: tuple[int | None, ...]
    """One per stage that was due, in order: the marker's code, or None when no marker came."""
    system_error: str | None = None
    timed_out_after: float | None = None
    canceled: bool = False


def decide(seen: Observation) -> JobResult:
    """Cancel and timeout win (the runner cut the job short); then infrastructure; then the script."""
    if seen.canceled:
        return Canceled()
    if seen.timed_out_after is not None:
        return TimedOut(seen.timed_out_after)
    if seen.system_error is not None:
        return SystemFailure(seen.system_error)
    for code in seen.exit_codes:
        if code is None:
            return SystemFailure("a stage ended without reporting its exit code")
        if code != 0:
            return ScriptFailure(code)
    if not seen.exit_codes:
        return SystemFailure("no stage ran")
    return Success()


def exit_status(result: JobResult) -> int:
    """The `kuberunner exec` exit status for a result."""
    match result:
        case Success():
            return 0
        case ScriptFailure():
            return 1
        case SystemFailure():
            return 3
        case TimedOut():
            return 4
        case Canceled():
            return 130


def summary_line(result: JobResult) -> str:
    """The last line of the trace, in GitLab's words."""
    match result:
        case Success():
            return "Job succeeded"
        case ScriptFailure(exit_code=code):
            return f"ERROR: Job failed: exit code {code}"
        case SystemFailure(reason=reason):
            return f"ERROR: Job failed (system failure): {reason}"
        case TimedOut(timeout_seconds=seconds):
            return f"ERROR: Job failed: execution took longer than {_duration(seconds)}"
        case Canceled():
            return "ERROR: Job failed: canceled"


def _duration(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
