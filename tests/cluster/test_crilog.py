"""The CRI log writer and reader, fed bytes (no processes)."""

from __future__ import annotations

import pytest

from kuberunner.cluster.node.crilog import (
    CriLogWriter,
    CriRecord,
    format_rfc3339nano,
    format_rfc3339nano_fixed,
    parse_record,
    parse_rfc3339,
)

T = 1_700_000_000_123_450_000  # 2023-11-14T22:13:20.12345Z


def test_newline_ends_a_full_record_and_drops_cr() -> None:
    writer = CriLogWriter()
    assert writer.feed("stdout", b"one\r\ntwo\n", T) == [
        b"2023-11-14T22:13:20.12345Z stdout F one\n",
        b"2023-11-14T22:13:20.12345Z stdout F two\n",
    ]


def test_partial_line_waits_for_its_newline() -> None:
    writer = CriLogWriter()
    assert writer.feed("stdout", b"abc", T) == []
    assert writer.feed("stdout", b"def\n", T) == [b"2023-11-14T22:13:20.12345Z stdout F abcdef\n"]


def test_streams_are_buffered_separately() -> None:
    writer = CriLogWriter()
    assert writer.feed("stdout", b"out", T) == []
    assert writer.feed("stderr", b"err\n", T) == [b"2023-11-14T22:13:20.12345Z stderr F err\n"]
    assert writer.close("stdout", T) == [b"2023-11-14T22:13:20.12345Z stdout P out\n"]
    assert writer.close("stdout", T) == []


def test_long_line_is_split_into_partial_records() -> None:
    writer = CriLogWriter()
    records = writer.feed("stdout", b"x" * 40960 + b"\n", T)
    tags = [r.split(b" ")[2] for r in records]
    sizes = [len(r.split(b" ", 3)[3]) - 1 for r in records]
    assert tags == [b"P", b"P", b"F"]
    assert sizes == [16384, 16384, 8192]


def test_line_of_exactly_max_is_partial_then_empty_full() -> None:
    writer = CriLogWriter(max_line=4)
    assert writer.feed("stdout", b"abcd\n", T) == [
        b"2023-11-14T22:13:20.12345Z stdout P abcd\n",
        b"2023-11-14T22:13:20.12345Z stdout F \n",
    ]


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (1_700_000_000_000_000_000, "2023-11-14T22:13:20Z"),
        (1_700_000_000_100_000_000, "2023-11-14T22:13:20.1Z"),
        (1_700_000_000_000_000_001, "2023-11-14T22:13:20.000000001Z"),
    ],
)
def test_rfc3339nano_drops_trailing_zeros(ns: int, text: str) -> None:
    assert format_rfc3339nano(ns) == text
    assert parse_rfc3339(text) == ns


def test_fixed_format_has_nine_digits() -> None:
    assert format_rfc3339nano_fixed(1_700_000_000_100_000_000) == "2023-11-14T22:13:20.100000000Z"


def test_parse_offsets_and_rejects_garbage() -> None:
    assert parse_rfc3339("2023-11-14T23:13:20+01:00") == 1_700_000_000_000_000_000
    with pytest.raises(ValueError):
        parse_rfc3339("yesterday")


def test_parse_record_round_trip() -> None:
    assert parse_record(b"2023-11-14T22:13:20.12345Z stderr P a b c\n") == CriRecord(
        ts_ns=T, stream="stderr", partial=True, content=b"a b c"
    )
    assert parse_record(b"2023-11-14T22:13:20Z stdout F\n") == CriRecord(
        ts_ns=1_700_000_000_000_000_000, stream="stdout", partial=False, content=b""
    )
    assert parse_record(b"garbage line\n") is None
