"""The job log as a user sees it: exact bytes in every sink, masking that survives any split, the limit."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest

from kuberunner.errors import BadInput
from kuberunner.trace import FileSink, Level, Masker, SinkError, StreamSink, Trace, limit_notice


class ListSink:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def close(self) -> None:
        self.closed = True

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def make(**options: object) -> tuple[Trace, ListSink]:
    trace = Trace(**options)  # type: ignore[arg-type]
    sink = ListSink()
    trace.add_sink(sink)
    return trace, sink


def test_job_bytes_pass_through_exactly() -> None:
    trace, sink = make()
    raw = b"\x00\xff\xfe invalid utf-8 \r progress\r\n" + bytes(range(256))
    trace.job_output(raw)
    trace.close()
    assert sink.data == raw
    assert trace.job_bytes_written == len(raw)
    assert sink.closed


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        pytest.param(b"", b"Job succeeded\n", id="empty-trace"),
        pytest.param(b"done\n", b"done\nJob succeeded\n", id="after-newline"),
        pytest.param(b"printf no newline", b"printf no newline\nJob succeeded\n", id="after-partial-line"),
        pytest.param(b"progress\r", b"progress\r\nJob succeeded\n", id="after-carriage-return"),
    ],
)
def test_runner_line_always_starts_on_a_new_line(job: bytes, expected: bytes) -> None:
    trace, sink = make()
    trace.job_output(job)
    trace.runner_line("Job succeeded", level="success")
    assert sink.data == expected


def test_two_runner_lines_in_a_row_add_no_blank_line() -> None:
    trace, sink = make()
    trace.runner_line("one")
    trace.runner_line("two")
    trace.job_output(b"x")
    trace.runner_line("three")
    assert sink.data == b"one\ntwo\nx\nthree\n"


@pytest.mark.parametrize(
    ("level", "colored"),
    [
        pytest.param("info", b"text\n", id="info-plain"),
        pytest.param("success", b"\x1b[32;1mtext\x1b[0;m\n", id="success-green"),
        pytest.param("warning", b"\x1b[0;33mtext\x1b[0;m\n", id="warning-yellow"),
        pytest.param("error", b"\x1b[31;1mtext\x1b[0;m\n", id="error-red"),
    ],
)
def test_runner_line_colours(level: Level, colored: bytes) -> None:
    with_color, color_sink = make(color=True)
    without_color, plain_sink = make(color=False)
    for trace in (with_color, without_color):
        trace.job_output(b"out")
        trace.runner_line("text", level=level)
    assert color_sink.data == b"out\n" + colored
    assert plain_sink.data == b"out\ntext\n"


def test_masking_whole_value_in_output_and_runner_lines() -> None:
    trace, sink = make(masked=["s3cr3t-value"])
    trace.job_output(b"token=s3cr3t-value; again s3cr3t-value\n")
    trace.runner_line("ERROR: cannot use s3cr3t-value", level="error")
    trace.close()
    assert sink.data == b"token=[MASKED]; again [MASKED]\nERROR: cannot use [MASKED]\n"


def test_masking_value_split_across_two_chunks() -> None:
    trace, sink = make(masked=["0123456789abcdef"])
    trace.job_output(b"key: 01234567")
    assert sink.data == b"key: "  # the possible start of the value is held back
    trace.job_output(b"89abcdef and more")
    trace.close()
    assert sink.data == b"key: [MASKED] and more"


def test_held_bytes_are_released_when_they_turn_out_harmless() -> None:
    trace, sink = make(masked=["password"])
    trace.job_output(b"pass")
    assert sink.data == b""
    trace.job_output(b"port\n")
    assert sink.data == b"passport\n"


def test_flush_releases_held_bytes_before_a_runner_line() -> None:
    trace, sink = make(masked=["password"])
    trace.job_output(b"passw")
    trace.runner_line("Job succeeded")
    assert sink.data == b"passw\nJob succeeded\n"


def test_short_values_are_masked_too() -> None:
    trace, sink = make(masked=["ab"])
    trace.job_output(b"xa")
    trace.job_output(b"bx")
    trace.close()
    assert sink.data == b"x[MASKED]x"


def test_the_longest_value_wins_even_when_the_split_comes_after_the_shorter_one() -> None:
    trace, sink = make(masked=["abc", "abcdef"])
    trace.job_output(b"abc")
    trace.job_output(b"def!")
    trace.close()
    assert sink.data == b"[MASKED]!"


def test_hold_back_is_bounded_by_the_longest_value() -> None:
    masker = Masker(["x" * 40])
    for _ in range(1000):
        masker.feed(b"x" * 39)
        assert masker.held <= 39
    masker.feed(b"y")
    assert masker.held == 0


def test_every_split_point_of_a_forty_character_value() -> None:
    value = "A" * 10 + "b" * 10 + "C" * 10 + "d" * 10
    stream = b"before " + value.encode() + b" after\n"
    for cut in range(len(stream) + 1):
        trace, sink = make(masked=[value])
        trace.job_output(stream[:cut])
        trace.job_output(stream[cut:])
        trace.close()
        assert sink.data == b"before [MASKED] after\n", cut


def test_output_limit_cuts_job_output_and_says_so_once() -> None:
    trace, sink = make(output_limit=10)
    trace.job_output(b"0123456")
    trace.job_output(b"789abc")
    trace.job_output(b"never shown")
    trace.runner_line("Job succeeded")
    assert sink.data == b"0123456789\n" + limit_notice(10).encode() + b"\nJob succeeded\n"
    assert limit_notice(10) == (
        "Job's log exceeded limit of 10 bytes.\n"
        "Job execution will continue but no more output will be collected."
    )
    assert trace.truncated
    assert trace.job_bytes_written == 10


def test_output_exactly_at_the_limit_is_not_truncated() -> None:
    trace, sink = make(output_limit=4)
    trace.job_output(b"abc\n")
    trace.runner_line("Job succeeded")
    assert sink.data == b"abc\nJob succeeded\n"
    assert not trace.truncated


def test_limit_notice_is_a_coloured_warning() -> None:
    trace, sink = make(output_limit=2, color=True)
    trace.job_output(b"abc")
    assert sink.data == b"ab\n\x1b[0;33m" + limit_notice(2).encode() + b"\x1b[0;m\n"


def test_limit_counts_masked_output() -> None:
    trace, sink = make(output_limit=12, masked=["a-long-secret"])
    trace.job_output(b"a-long-secret!")
    trace.close()
    assert sink.data == b"[MASKED]!"
    assert trace.job_bytes_written == 9


def test_stream_and_file_sinks_get_the_same_bytes(tmp_path: Path) -> None:
    stream = io.BytesIO()
    trace = Trace(masked=["hunter22"])
    trace.add_sink(StreamSink(stream))
    trace.add_sink(FileSink(tmp_path / "trace.log"))
    trace.job_output(b"pw=hunter")
    trace.job_output(b"22")
    trace.runner_line("done")
    trace.close()
    expected = b"pw=[MASKED]\ndone\n"
    assert stream.getvalue() == expected
    assert (tmp_path / "trace.log").read_bytes() == expected
    assert not stream.closed


def test_file_sink_shows_bytes_before_close(tmp_path: Path) -> None:
    path = tmp_path / "trace.log"
    trace = Trace()
    trace.add_sink(FileSink(path))
    trace.job_output(b"start")
    assert path.read_bytes() == b"start"
    trace.close()


class BrokenStream(io.BytesIO):
    def write(self, data: object) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_a_failing_sink_is_dropped_reported_once_and_the_others_get_every_byte(tmp_path: Path) -> None:
    trace = Trace()
    trace.add_sink(StreamSink(BrokenStream()))
    trace.add_sink(FileSink(tmp_path / "trace.log"))
    reasons: list[str] = []
    trace.on_failure(reasons.append)
    trace.job_output(b"a\n")
    trace.runner_line("b")
    trace.close()
    assert (tmp_path / "trace.log").read_bytes() == b"a\nb\n"
    assert reasons == ["writing the job log failed: stdout: Broken pipe"]
    assert trace.failure == reasons[0]


def test_a_full_disk_fails_the_trace_file_sink_and_nothing_raises() -> None:
    trace, sink = make()
    trace.add_sink(FileSink(Path("/dev/full")))
    trace.runner_line("before")
    trace.job_output(b"x" * 100_000)
    trace.close()
    assert trace.failure == "writing the job log failed: trace file /dev/full: No space left on device"
    assert sink.data == b"before\n" + b"x" * 100_000
    assert sink.closed


def test_a_listener_added_after_the_failure_hears_it_at_once() -> None:
    trace = Trace()
    trace.add_sink(StreamSink(BrokenStream(), name="terminal"))
    trace.runner_line("lost")
    reasons: list[str] = []
    trace.on_failure(reasons.append)
    assert reasons == ["writing the job log failed: terminal: Broken pipe"]


class ForeignSink:
    def write(self, data: bytes) -> None:
        raise OSError(errno.EIO, "Input/output error")

    def close(self) -> None:
        pass


def test_a_foreign_sink_failing_is_named_by_its_type() -> None:
    trace = Trace()
    trace.add_sink(ForeignSink())
    trace.runner_line("x")
    assert trace.failure == "writing the job log failed: ForeignSink: [Errno 5] Input/output error"


def test_a_pipe_whose_reader_left_is_pointed_at_dev_null() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = os.fdopen(write_end, "wb")
    sink = StreamSink(stream)
    with pytest.raises(SinkError, match=r"^stdout: Broken pipe$"):
        sink.write(b"data")
    # What the stream still buffers can be flushed (at interpreter exit) without another error.
    stream.write(b"more")
    stream.close()


def test_memory_does_not_grow_with_output() -> None:
    trace, sink = make(output_limit=1024, masked=["x" * 40])
    chunk = b"x" * 39 + b"y" * 1000
    for _ in range(10_000):
        trace.job_output(chunk)
    assert trace.job_bytes_written == 1024
    assert len(sink.chunks) == 2  # the kept output and the notice; nothing is buffered for later


def test_a_trace_file_that_cannot_be_created_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "trace.log"
    with pytest.raises(BadInput) as caught:
        FileSink(path)
    assert str(caught.value) == f"{path}: cannot write the trace file: No such file or directory"


class Clock:
    """Unix time that a test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("job", "before_end"),
    [
        pytest.param(b"hello\n", b"hello\n", id="after-newline"),
        pytest.param(b"no newline", b"no newline\n", id="after-partial-line"),
        pytest.param(b"", b"", id="no-output"),
    ],
)
def test_section_bytes_as_gitlab_renders_them(job: bytes, before_end: bytes) -> None:
    clock = Clock(1700000000.75)
    trace, sink = make(clock=clock, color=True)
    trace.job_output(b"earlier output")
    trace.section_start("step_script", 'Executing "step_script" stage of the job script')
    trace.job_output(job)
    clock.now = 1700000003.2
    trace.section_end("step_script")
    trace.runner_line("Job succeeded", level="success")
    assert sink.data == (
        b"earlier output\n"
        b"section_start:1700000000:step_script\r\x1b[0K"
        b'Executing "step_script" stage of the job script\n'
        + before_end
        + b"section_end:1700000003:step_script\r\x1b[0K"
        b"\x1b[32;1mJob succeeded\x1b[0;m\n"
    )


def test_sections_back_to_back_and_masked_output_flushed_inside() -> None:
    trace, sink = make(clock=Clock(5), masked=["password"])
    trace.section_start("get_sources", "Preparing the project directory")
    trace.section_end("get_sources")
    trace.section_start("step_script", "Running")
    trace.job_output(b"passw")  # held back: it might become the masked value
    trace.section_end("step_script")
    trace.close()
    assert sink.data == (
        b"section_start:5:get_sources\r\x1b[0KPreparing the project directory\n"
        b"section_end:5:get_sources\r\x1b[0K"
        b"section_start:5:step_script\r\x1b[0KRunning\n"
        b"passw\n"
        b"section_end:5:step_script\r\x1b[0K"
    )


def test_a_section_name_gitlab_cannot_parse_is_refused() -> None:
    trace, sink = make()
    with pytest.raises(ValueError, match="section names"):
        trace.section_end("step script\n")
    assert sink.data == b""
