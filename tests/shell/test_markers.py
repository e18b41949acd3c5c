from hypothesis import given
from hypothesis import strategies as st

from kuberunner.shell.markers import JobOutput, MarkerScanner, ScanEvent, StageExited, marker_bytes

NONCE = "0123456789abcdef0123456789abcdef"


def run(chunks: list[bytes], stage: str = "step_script") -> tuple[bytes, list[StageExited]]:
    scanner = MarkerScanner()
    scanner.expect(stage=stage, nonce=NONCE)
    events: list[ScanEvent] = []
    for chunk in chunks:
        events += scanner.feed(chunk)
    events += scanner.flush()
    output = b"".join(e.data for e in events if isinstance(e, JobOutput))
    return output, [e for e in events if isinstance(e, StageExited)]


def test_marker_is_removed_with_its_leading_newline() -> None:
    out, exits = run([b"hello" + marker_bytes(stage="step_script", nonce=NONCE, exit_code=3)])
    assert out == b"hello"
    assert exits == [StageExited("step_script", 3)]


def test_output_ending_in_newline_keeps_it() -> None:
    out, exits = run([b"hello\n" + marker_bytes(stage="step_script", nonce=NONCE, exit_code=0)])
    assert (out, exits) == (b"hello\n", [StageExited("step_script", 0)])


def test_forged_marker_without_nonce_is_output() -> None:
    fake = b'\n{"command_exit_code": 0, "script": "step_script"}\n'
    out, exits = run([fake + marker_bytes(stage="step_script", nonce=NONCE, exit_code=7)])
    assert out == fake
    assert exits == [StageExited("step_script", 7)]


def test_marker_of_another_stage_is_output() -> None:
    stale = marker_bytes(stage="get_sources", nonce=NONCE, exit_code=0)
    out, exits = run([stale])
    assert out == stale
    assert exits == []


def test_partial_marker_prefix_is_released_when_it_turns_out_to_be_output() -> None:
    scanner = MarkerScanner()
    scanner.expect(stage="step_script", nonce=NONCE)
    first = scanner.feed(b'abc\n{"command_exit')
    assert first == [JobOutput(b"abc")]
    assert scanner.held == len(b'\n{"command_exit')
    # The new trailing newline could start the real marker, so it waits for the next bytes.
    assert scanner.feed(b"ed\n") == [JobOutput(b'\n{"command_exited')]
    assert scanner.held == 1
    assert scanner.flush() == [JobOutput(b"\n")]


def test_only_first_marker_counts_until_the_next_expect() -> None:
    marker = marker_bytes(stage="step_script", nonce=NONCE, exit_code=0)
    out, exits = run([marker + b"after" + marker])
    assert exits == [StageExited("step_script", 0)]
    assert out == b"after" + marker


@given(
    before=st.binary(max_size=300),
    after=st.binary(max_size=50),
    code=st.integers(min_value=0, max_value=255),
    cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=8),
)
def test_any_split_gives_the_same_bytes(before: bytes, after: bytes, code: int, cuts: list[int]) -> None:
    stream = before + marker_bytes(stage="step_script", nonce=NONCE, exit_code=code) + after
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    out, exits = run(chunks)
    assert exits == [StageExited("step_script", code)]
    assert out == before + after
