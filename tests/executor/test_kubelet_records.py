from hypothesis import given
from hypothesis import strategies as st

from kuberunner.executor.kubelet_records import Record, RecordParser, ResumePoint

TS1 = "2026-11-27T10:00:01.000000001Z"
TS2 = "2026-11-27T10:00:01.000000002Z"
TS3 = "2026-11-27T10:00:02.500000000Z"


def test_full_and_partial_records_give_back_the_written_bytes() -> None:
    parser = RecordParser(record_limit=4)
    body = f"{TS1} abcd{TS2} ef\n{TS3} \n".encode()
    assert parser.feed(body) == [Record(TS1, b"abcd"), Record(TS2, b"ef\n"), Record(TS3, b"\n")]


def test_a_record_exactly_at_the_limit_with_its_newline_is_full() -> None:
    parser = RecordParser(record_limit=4)
    assert parser.feed(f"{TS1} abcd\n".encode()) == [Record(TS1, b"abcd\n")]


def test_a_partial_record_waits_for_the_next_byte() -> None:
    parser = RecordParser(record_limit=4)
    assert parser.feed(f"{TS1} abcd".encode()) == []
    assert parser.feed(b"2") == [Record(TS1, b"abcd")]


def test_a_final_partial_record_comes_out_at_the_end_of_the_stream() -> None:
    parser = RecordParser()
    assert parser.feed(f"{TS1} no newline".encode()) == []
    assert parser.flush() == [Record(TS1, b"no newline")]


@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=10))
def test_any_chunking_gives_the_same_records(cuts: list[int]) -> None:
    body = f"{TS1} abcd{TS2} ef\n{TS3} same\n{TS3} same\n".encode()
    points = sorted({c % (len(body) + 1) for c in cuts})
    parser = RecordParser(record_limit=4)
    records = []
    for a, b in zip([0, *points], [*points, len(body)], strict=True):
        records += parser.feed(body[a:b])
    assert records == [
        Record(TS1, b"abcd"),
        Record(TS2, b"ef\n"),
        Record(TS3, b"same\n"),
        Record(TS3, b"same\n"),
    ]


def test_resume_skips_exactly_what_was_delivered_in_that_second() -> None:
    first = [Record(TS1, b"a\n"), Record(TS2, b"b\n"), Record(TS2, b"b\n")]
    point = ResumePoint()
    assert [point.admit(r) for r in first] == [True, True, True]
    assert point.since_time() == "2026-11-27T10:00:01Z"
    point.restart()
    # The server sends the whole second again, then what is new (one more identical line at TS2).
    again = [*first, Record(TS2, b"b\n"), Record(TS3, b"c\n")]
    assert [point.admit(r) for r in again] == [False, False, False, True, True]
