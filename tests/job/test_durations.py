"""GitLab's duration syntax for `timeout:`, as users write it."""

from __future__ import annotations

import pytest

from kuberunner.job.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h 30m", 5400),
        ("1h30m", 5400),
        ("90 minutes", 5400),
        ("3 hours 20 minutes", 12000),
        ("2h", 7200),
        ("10m 30s", 630),
        ("1 day", 86400),
        ("2 days", 172800),
        ("30s", 30),
        ("3600", 3600),
        ("1 hour and 5 minutes", 3900),
        ("1 hr, 2 mins, 3 secs", 3723),
        ("1.5 hours", 5400),
        ("1 week", 604800),
        ("1 month", 2592000),
        ("1:30:00", 5400),
        ("5:00", 300),
        ("  15 Minutes ", 900),
        ("1H 1M 1S", 3661),
    ],
    ids=lambda value: str(value),
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "a duration must not be empty"),
        ("   ", "a duration must not be empty"),
        ("soon", "'soon' is not a duration (expected e.g. '1h 30m' or '90 minutes')"),
        ("1 fortnight", "'1 fortnight' is not a duration: unknown unit 'fortnight'"),
        ("-5m", "'-5m' is not a duration (expected e.g. '1h 30m' or '90 minutes')"),
        ("0", "'0' is not a positive duration"),
        ("0h 0m", "'0h 0m' is not a positive duration"),
        ("1" * 201, "a duration is at most 200 characters"),
        ("and", "'and' is not a duration (expected e.g. '1h 30m' or '90 minutes')"),
    ],
    ids=[
        "empty",
        "blank",
        "word",
        "unknown-unit",
        "negative",
        "zero",
        "zero-parts",
        "too-long",
        "filler-only",
    ],
)
def test_not_durations(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == message
