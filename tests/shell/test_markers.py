from hypothesis import given
from hypothesis import strategies as st

from kuberunner.shell.commands import LOST_EXIT_CODE
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


NEXT_NONCE = "fedcba9876543210fedcba9876543210"


@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_a_probe_copy_after_the_real_marker_never_reaches_the_trace(cuts: list[int]) -> None:
    """A probe written just as the stage ended prints the marker again (LOST_EXIT_CODE) after the
    real one; the next stage's output is read with that copy cut out, however the bytes are split."""
    real = marker_bytes(stage="get_sources", nonce=NONCE, exit_code=0)
    probe = marker_bytes(stage="get_sources", nonce=NONCE, exit_code=LOST_EXIT_CODE)
    after = marker_bytes(stage="step_script", nonce=NEXT_NONCE, exit_code=2)
    data = b"fetching\n" + real + b"build " + probe + b"output" + after
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    scanner = MarkerScanner()
    scanner.expect(stage="get_sources", nonce=NONCE)
    output, exits, parked = b"", list[StageExited](), None
    # As the attach strategy does: what follows a marker waits for the next stage's expectation.
    for chunk in chunks:
        if parked is not None:
            parked += chunk
            continue
        for event in scanner.feed(chunk):
            if isinstance(event, StageExited):
                exits.append(event)
                parked = b""
            elif parked is None:
                output += event.data
            else:
                parked += event.data
    assert parked is not None
    scanner.expect(stage="step_script", nonce=NEXT_NONCE)
    for event in scanner.feed(parked) + scanner.flush():
        if isinstance(event, StageExited):
            exits.append(event)
        else:
            output += event.data
    assert output == b"fetching\nbuild output"
    assert exits == [
        StageExited("get_sources", 0),
        StageExited("step_script", 2),
    ]


def test_a_probe_copy_is_the_awaited_stage_lost_when_the_real_marker_never_came() -> None:
    out, exits = run([b"seq tail", marker_bytes(stage="step_script", nonce=NONCE, exit_code=LOST_EXIT_CODE)])
    assert (out, exits) == (b"seq tail", [StageExited("step_script", LOST_EXIT_CODE)])


def test_a_forged_probe_copy_without_the_nonce_is_output() -> None:
    forged = marker_bytes(stage="step_script", nonce="0" * 32, exit_code=LOST_EXIT_CODE)
    out, exits = run([b"x" + marker_bytes(stage="step_script", nonce=NONCE, exit_code=0) + forged])
    assert exits == [StageExited("step_script", 0)]
    assert out == b"x" + forged


def test_without_spent_cuts_the_probe_copy_from_bytes_after_the_last_stage() -> None:
    scanner = MarkerScanner()
    scanner.expect(stage="after_script", nonce=NONCE)
    scanner.feed(marker_bytes(stage="after_script", nonce=NONCE, exit_code=0))
    probe = marker_bytes(stage="after_script", nonce=NONCE, exit_code=LOST_EXIT_CODE)
    assert scanner.without_spent(b"a" + probe + b"b") == b"ab"
