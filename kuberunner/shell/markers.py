"""Finds a stage's exit marker in the job's output stream and cuts it out, byte-exact (sans-I/O).

A marker is `\\n{"command_exit_code": N, "script": "STAGE", "nonce": "NONCE"}\\n`, the leading newline
added by the start line so the JSON begins on a line of its own. Only the stage being waited on, with
its nonce, is a marker; anything else that looks like one is job output and passes through unchanged.
Bytes that could still become a marker are held back, at most `max_hold`, until the next feed decides.

A stage's marker printed again by a probe (`shell.commands.probe_stage`, exit code LOST_EXIT_CODE)
after the real one was read is not output either: the scanner drops it wherever it comes later.
"""

from __future__ import annotations

from dataclasses import dataclass

from kuberunner.shell.commands import LOST_EXIT_CODE

_PREFIX = b'\n{"command_exit_code": '
_MAX_DIGITS = 10


@dataclass(frozen=True, slots=True)
class JobOutput:
    data: bytes


@dataclass(frozen=True, slots=True)
class StageExited:
    stage: str
    exit_code: int


ScanEvent = JobOutput | StageExited


def marker_bytes(*, stage: str, nonce: str, exit_code: int) -> bytes:
    """What the start line prints; kept here so the scanner and its tests agree on one shape."""
    return _PREFIX + f'{exit_code}, "script": "{stage}", "nonce": "{nonce}"}}\n'.encode()


class MarkerScanner:
    """Feed raw log bytes; get job output and, once, the exit of the awaited stage."""

    def __init__(self, *, max_hold: int = 512) -> None:
        self._held = b""
        self._stage: str | None = None
        self._suffix = b""
        self._exit_code = 0
        self._max_hold = max_hold
        self._spent = b""
        """The probe marker of the stage that exited last, should a probe print it after all."""

    def expect(self, *, stage: str, nonce: str) -> None:
        """Accept the marker of `stage` with `nonce` from now on (call before starting the stage)."""
        suffix = f', "script": "{stage}", "nonce": "{nonce}"}}\n'.encode()
        if len(_PREFIX) + _MAX_DIGITS + len(suffix) > self._max_hold:
            raise ValueError(f"a marker for stage {stage!r} would exceed max_hold={self._max_hold}")
        self._stage, self._suffix = stage, suffix

    @property
    def held(self) -> int:
        """Bytes received but not yet released as output (for resuming at the exact byte)."""
        return len(self._held)

    @property
    def awaiting(self) -> str | None:
        return self._stage

    def feed(self, data: bytes) -> list[ScanEvent]:
        buffer = self._held + data
        self._held = b""
        events: list[ScanEvent] = []
        start = 0
        while self._stage is not None:
            found = buffer.find(_PREFIX, start)
            if found < 0:
                keep = _partial_prefix_length(buffer, start)
                self._held = buffer[len(buffer) - keep :]
                buffer = buffer[: len(buffer) - keep]
                break
            spent = _match_exact(self._spent, buffer, found)
            verdict = self._match(buffer, found) if spent is not None and spent < 0 else spent
            if verdict is None:  # undecidable yet: hold from the candidate on
                self._held = buffer[found:]
                buffer = buffer[:found]
                break
            if verdict < 0:
                start = found + 1
                continue
            if found:
                events.append(JobOutput(buffer[:found]))
            if spent is not None and spent >= 0:
                buffer = buffer[spent:]
                start = 0
                continue
            events.append(StageExited(self._stage, self._exit_code))
            self._spent = _PREFIX + str(LOST_EXIT_CODE).encode() + self._suffix
            self._stage = None
            buffer = buffer[verdict:]
            start = 0
        if buffer:
            events.append(JobOutput(buffer))
        return events

    def without_spent(self, data: bytes) -> bytes:
        """`data`, read after the last stage's marker, without a probe's copy of that marker."""
        return data.replace(self._spent, b"") if self._spent else data

    def flush(self) -> list[ScanEvent]:
        """The stream ended: whatever was held is plain output."""
        held, self._held = self._held, b""
        return [JobOutput(held)] if held else []

    def _match(self, buffer: bytes, at: int) -> int | None:
        """End offset of a full marker at `at`, -1 when it is not one, None when more bytes are needed."""
        pos = at + len(_PREFIX)
        digits = 0
        while pos + digits < len(buffer) and buffer[pos + digits : pos + digits + 1].isdigit():
            digits += 1
            if digits > _MAX_DIGITS:
                return -1
        if pos + digits == len(buffer):
            return None
        if digits == 0:
            return -1
        rest = buffer[pos + digits : pos + digits + len(self._suffix)]
        if not self._suffix.startswith(rest):
            return -1
        if len(rest) < len(self._suffix):
            return None
        self._exit_code = int(buffer[pos : pos + digits])
        return pos + digits + len(self._suffix)


def _match_exact(marker: bytes, buffer: bytes, at: int) -> int | None:
    """End offset of `marker` at `at`, -1 when it is not there (or empty), None when more bytes are needed."""
    if not marker:
        return -1
    candidate = buffer[at : at + len(marker)]
    if not marker.startswith(candidate):
        return -1
    return at + len(marker) if len(candidate) == len(marker) else None


def _partial_prefix_length(buffer: bytes, start: int) -> int:
    """Length of the longest tail of buffer[start:] that is a proper prefix of the marker's prefix."""
    for size in range(min(len(_PREFIX) - 1, len(buffer) - start), 0, -1):
        if _PREFIX.startswith(buffer[len(buffer) - size :]):
            return size
    return 0
