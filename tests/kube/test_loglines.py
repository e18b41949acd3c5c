"""The timestamped log-line splitter and the JSON-lines splitter, fed canned chunks."""

from __future__ import annotations

import pytest

from kuberunner.kube.loglines import LineSplitter, LineTooLong, LogRecord, TimestampedLineSplitter

TS1 = "2025-01-01T00:00:01.123456789Z"
TS2 = "2025-01-01T00:00:02.000000000Z"
BODY = f"{TS1} hello\n{TS2} world \u20ac\n".encode()


def feed_all(splitter: TimestampedLineSplitter, chunks: list[bytes]) -> list[LogRecord]:
    out: list[LogRecord] = []
    for chunk in chunks:
        out += splitter.feed(chunk)
    return out


def test_whole_lines() -> None:
    assert TimestampedLineSplitter().feed(BODY) == [
        LogRecord(TS1, b"hello", True),
        LogRecord(TS2, "world \u20ac".encode(), True),
    ]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 31, 32])
def test_any_chunking_gives_the_same_records(size: int) -> None:
    chunks = [BODY[i : i + size] for i in range(0, len(BODY), size)]
    assert feed_all(TimestampedLineSplitter(), chunks) == TimestampedLineSplitter().feed(BODY)


def test_a_line_waits_for_its_newline() -> None:
    s = TimestampedLineSplitter()
    assert s.feed(f"{TS1} no newline yet".encode()) == []
    assert s.feed(b"...done\n") == [LogRecord(TS1, b"no newline yet...done", True)]


def test_empty_line_and_content_with_spaces_are_kept_exactly() -> None:
    body = f"{TS1} \n{TS2}   two  spaces \n".encode()
    assert TimestampedLineSplitter().feed(body) == [
        LogRecord(TS1, b"", True), LogRecord(TS2, b"  two  spaces ", True)]


def test_five_mebibyte_line_is_cut_into_bounded_pieces_and_loses_nothing() -> None:
    line = bytes(range(256)).replace(b"\n", b"x") * (5 * 1024 * 4)  # 5 MiB, no newline
    assert len(line) == 5 * 1024 * 1024
    body = f"{TS1} ".encode() + line + b"\n" + f"{TS2} after\n".encode()
    s = TimestampedLineSplitter(max_line=64 * 1024)
    records = feed_all(s, [body[i : i + 100_000] for i in range(0, len(body), 100_000)])
    pieces = [r for r in records if r.timestamp == TS1]
    assert all(len(r.content) <= 64 * 1024 for r in records)
    assert b"".join(r.content for r in pieces) == line
    assert [r.complete for r in pieces] == [False] * (len(pieces) - 1) + [True]
    assert records[-1] == LogRecord(TS2, b"after", True)


def test_flush_returns_the_unfinished_line() -> None:
    s = TimestampedLineSplitter()
    s.feed(f"{TS1} partial".encode())
    assert s.flush() == [LogRecord(TS1, b"partial", False)]
    assert s.flush() == []


def test_untimestamped_input_is_passed_on_as_content() -> None:
    s = TimestampedLineSplitter()
    junk = b"x" * 200 + b" tail\n"
    assert s.feed(junk) == [LogRecord("", b"x" * 200 + b" tail", True)]
    assert s.feed(b"nospace\n") == [LogRecord("", b"nospace", True)]


def test_max_line_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TimestampedLineSplitter(max_line=0)


def test_json_lines_split_across_chunks() -> None:
    s = LineSplitter(max_line=100)
    assert s.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert s.feed(b":2}\n\n") == [b'{"b":2}', b""]
    assert s.pending == b""


def test_json_line_over_the_bound_is_an_error() -> None:
    s = LineSplitter(max_line=10)
    with pytest.raises(LineTooLong):
        s.feed(b"x" * 11)
