"""GitLab's human duration syntax ("1h 30m", "90 minutes", "3600"), as accepted by a job's `timeout:`.

GitLab parses these with the ChronicDuration library; we accept the same everyday forms so a
.gitlab-ci.yml behaves the same here: numbers with units (spaces, commas and "and" between parts
optional), a bare number meaning seconds, and clock notation ("1:30:00"). Errors are plain
ValueErrors; the caller adds the file and line.
"""

from __future__ import annotations

import re

_UNIT_SECONDS: dict[str, int] = {}
for _names, _seconds in (
    (("s", "sec", "secs", "second", "seconds"), 1),
    (("m", "min", "mins", "minute", "minutes"), 60),
    (("h", "hr", "hrs", "hour", "hours"), 3600),
    (("d", "day", "days"), 86400),
    (("w", "wk", "wks", "week", "weeks"), 7 * 86400),
    # ChronicDuration's month is 30 days and its year 365 days (no calendar is involved).
    (("mo", "mos", "month", "months"), 30 * 86400),
    (("y", "yr", "yrs", "year", "years"), 365 * 86400),
):
    for _name in _names:
        _UNIT_SECONDS[_name] = _seconds

_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)")
_FILLER = re.compile(r"(?:\s|,|\band\b)+")
_CLOCK = re.compile(r"(?:(\d+):)?(\d+):(\d{1,2})")

MAX_JOB_TIMEOUT = 2_629_746
"""GitLab's longest job timeout, 1 month (Rails' month: 30.436875 days); past it the number only
overflows what Kubernetes and clocks can hold (`activeDeadlineSeconds`)."""

MAX_TEXT = 200
"""Longer text is no duration anyone writes; refusing it keeps the parser's work bounded."""


def parse_duration(text: str) -> int:
    """Return the whole number of seconds `text` stands for; ValueError if it is not a duration.

    >>> parse_duration("1h 30m")
    5400
    """
    if len(text) > MAX_TEXT:
        raise ValueError(f"a duration is at most {MAX_TEXT} characters")
    normalized = text.strip().lower()
    if not normalized:
        raise ValueError("a duration must not be empty")
    clock = _CLOCK.fullmatch(normalized)
    if clock:
        hours, minutes, seconds = (int(g) if g else 0 for g in clock.groups())
        total = float(hours * 3600 + minutes * 60 + seconds)
    else:
        total = _sum_parts(normalized, text)
    seconds_total = int(total)
    if seconds_total <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return seconds_total


def _sum_parts(normalized: str, original: str) -> float:
    total = 0.0
    position = 0
    seen_part = False
    while position < len(normalized):
        filler = _FILLER.match(normalized, position)
        if filler and filler.end() > position:
            position = filler.end()
            continue
        part = _PART.match(normalized, position)
        if part is None:
            raise ValueError(f"{original!r} is not a duration (expected e.g. '1h 30m' or '90 minutes')")
        number, unit = part.groups()
        if unit and unit not in _UNIT_SECONDS:
            raise ValueError(f"{original!r} is not a duration: unknown unit {unit!r}")
        # A bare number means seconds, as in GitLab.
        total += float(number) * _UNIT_SECONDS[unit or "s"]
        seen_part = True
        position = part.end()
    if not seen_part:
        raise ValueError(f"{original!r} is not a duration (expected e.g. '1h 30m' or '90 minutes')")
    return total
