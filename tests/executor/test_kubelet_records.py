import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuberunner.executor.kubelet_records import MalformedLog, Record, RecordParser, ResumePoint

TS1 = "2026-11-27T10:00:01.000000001Z"
TS2 = "2026-11-27T10:00:01.000000002Z"
TS3 = "2026-11-27T10:00:02.500000000Z"


def test_a_line_split_by_the_runtime_has_one_timestamp_and_comes_back_whole() -> None:
    # What the kubelet serves for a 40000-byte line the runtime wrote as three 16 KiB records.
    line = b"x" * 40000 + b"\n"
    body = f"{TS1} ".encode() + line + f"{TS3} next\n".encode()
    assert RecordParser().feed(body) == [Record(TS1, line), Record(TS3, b"next\n")]


def test_a_long_open_line_is_handed_out_in_fragments() -> None:
    parser = RecordParser(open_line_limit=4)
    assert parser.feed(f"{TS1} ab".encode()) == []
    assert parser.feed(b"cdef") == [Record(TS1, b"abcdef")]
    assert parser.feed(b"g\n") == [Record(TS1, b"g\n", start=6)]


def test_a_final_line_without_newline_comes_out_at_the_end_of_the_stream() -> None:
    parser = RecordParser()
    assert parser.feed(f"{TS1} no newline".encode()) == []
    assert parser.flush() == [Record(TS1, b"no newline")]


def test_a_body_without_timestamps_is_malformed() -> None:
    with pytest.raises(MalformedLog, match="expected a timestamp"):
        RecordParser().feed(b"<html><body>502 Bad Gateway</body></html>\n")


def test_a_resumed_stream_drops_the_headless_tail_of_an_older_line() -> None:
    parser = RecordParser()
    parser.reset(resuming=True)
    assert parser.feed(b"tail of an older line\n" + f"{TS3} new\n".encode()) == [Record(TS3, b"new\n")]


@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=10))
def test_any_chunking_gives_the_same_bytes(cuts: list[int]) -> None:
    body = f"{TS1} abcdef{TS2}\n{TS3} same\n{TS3} same\n".encode()
    points = sorted({c % (len(body) + 1) for c in cuts})
    parser = RecordParser(open_line_limit=4)
    records = []
    for a, b in zip([0, *points], [*points, len(body)], strict=True):
        records += parser.feed(body[a:b])
    assert b"".join(r.data for r in records) == f"abcdef{TS2}\nsame\nsame\n".encode()
    assert [r.timestamp for r in records if r.start == 0] == [TS1, TS3, TS3]


def test_resume_skips_exactly_what_was_delivered_in_that_second() -> None:
    first = [Record(TS1, b"a\n"), Record(TS2, b"b\n"), Record(TS2, b"b\n")]
    point = ResumePoint()
    assert [point.take(r) for r in first] == [b"a\n", b"b\n", b"b\n"]
    assert point.since_time() == "2026-11-27T10:00:01Z"
    point.restart()
    # The server sends the whole second again, then what is new (one more identical line at TS2).
    again = [*first, Record(TS2, b"b\n"), Record(TS3, b"c\n")]
    assert [point.take(r) for r in again] == [b"", b"", b"", b"b\n", b"c\n"]


def test_resume_inside_an_open_line_delivers_only_its_rest() -> None:
    point = ResumePoint()
    assert point.take(Record(TS1, b"a\n")) == b"a\n"
    assert point.take(Record(TS2, b"abcd")) == b"abcd"
    point.restart()
    again = [
        Record(TS1, b"a\n"),
        Record(TS2, b"ab"),
        Record(TS2, b"cdef", start=2),
        Record(TS2, b"g\n", start=6),
    ]
    assert b"".join(point.take(r) for r in again) == b"efg\n"
    point.restart()
    assert point.take(Record(TS2, b"abcdefg\n")) == b""
    assert point.take(Record(TS3, b"h\n")) == b"h\n"


def test_a_reader_resuming_from_the_journal_gets_an_open_line_again_whole() -> None:
    point = ResumePoint()
    point.take(Record(TS1, b"a\n"))
    point.take(Record(TS2, b"open, no newline yet"))
    timestamp, seen = point.at_line_start()
    adopted = ResumePoint(timestamp=timestamp, seen_at_timestamp=seen)
    adopted.restart()
    again = [Record(TS1, b"a\n"), Record(TS2, b"open, no newline yet, now ended\n")]
    assert b"".join(adopted.take(r) for r in again) == b"open, no newline yet, now ended\n"


def test_a_resume_that_shows_the_last_line_again_is_no_gap() -> None:
    point = ResumePoint()
    point.take(Record(TS1, b"a\n"))
    point.restart()
    assert [point.take(r) for r in [Record(TS1, b"a\n"), Record(TS3, b"c\n")]] == [b"", b"c\n"]
    point.stream_ended()
    assert point.gap_possible() is False


def test_a_resume_that_starts_past_the_last_line_may_have_lost_lines_to_rotation() -> None:
    point = ResumePoint()
    point.take(Record(TS1, b"a\n"))
    point.take(Record(TS2, b"b\n"))
    point.restart()
    # The kubelet rotated the file holding TS1 and TS2: the current one starts later.
    assert point.take(Record(TS3, b"c\n")) == b"c\n"
    assert point.gap_possible() is True
    assert point.gap_possible() is False, "asked once"


def test_a_resume_that_ends_before_the_last_line_came_again_may_have_lost_lines() -> None:
    point = ResumePoint()
    point.take(Record(TS1, b"a\n"))
    point.restart()
    point.stream_ended()  # an empty current file: idle, then a new stream
    assert point.gap_possible() is True


def test_the_first_stream_has_nothing_to_lose() -> None:
    point = ResumePoint()
    point.restart()
    point.stream_ended()
    assert point.gap_possible() is False
