"""The channel framing and channel-3 status parsing, fed canned bytes."""

from __future__ import annotations

import json

import pytest

from kuberunner.kube import channels
from kuberunner.kube.channels import ExitStatus, Frame, StatusCollector, decode, encode, parse_status


def test_channel_numbers_match_the_wire_contract() -> None:
    assert (channels.STDIN, channels.STDOUT, channels.STDERR, channels.ERROR, channels.RESIZE,
            channels.CLOSE) == (0, 1, 2, 3, 4, 255)


@pytest.mark.parametrize("channel,data", [(0, b"echo hi\n"), (1, b""), (2, b"\xff\x00\xfe"), (255, b"\x00")])
def test_encode_decode_round_trip(channel: int, data: bytes) -> None:
    wire = encode(channel, data)
    assert wire[0] == channel and wire[1:] == data
    assert decode(wire) == Frame(channel, data)


def test_v5_close_signal_is_255_then_the_channel() -> None:
    assert channels.close_signal(channels.STDIN) == b"\xff\x00"


def test_empty_message_has_no_channel() -> None:
    with pytest.raises(ValueError):
        decode(b"")


def test_channel_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        encode(256, b"x")


def test_success_is_exit_zero() -> None:
    assert parse_status(b'{"metadata":{},"status":"Success"}') == ExitStatus(0, None)


def test_exit_code_is_found_among_causes_not_just_the_first() -> None:
    payload = json.dumps({
        "status": "Failure", "reason": "NonZeroExitCode", "message": "exit code 3",
        "details": {"causes": [{"reason": "Other", "message": "7"}, {"reason": "ExitCode", "message": "3"}]},
    }).encode()
    assert parse_status(payload) == ExitStatus(3, None)


def test_internal_error_is_an_error_not_an_exit_code() -> None:
    payload = json.dumps({
        "status": "Failure", "reason": "InternalError", "code": 500,
        "message": 'Internal error occurred: exec: "ps": executable file not found in $PATH',
        "details": {"causes": [{"message": "exec: ps not found"}]},
    }).encode()
    result = parse_status(payload)
    assert result.exit_code is None
    assert result.error is not None and "executable file not found" in result.error


def test_non_zero_exit_without_a_usable_cause_is_an_error() -> None:
    payload = b'{"status":"Failure","reason":"NonZeroExitCode","message":"bad","details":{"causes":' \
              b'[{"reason":"ExitCode","message":"three"}]}}'
    assert parse_status(payload) == ExitStatus(None, "bad")


@pytest.mark.parametrize("payload", [b"not json", b"[1,2]", b'"Success"', b"\xff\xfe"])
def test_unreadable_status_is_an_error(payload: bytes) -> None:
    result = parse_status(payload)
    assert result.exit_code is None and result.error


def test_collector_joins_a_status_split_across_messages() -> None:
    c = StatusCollector()
    c.feed(b"")  # the server's empty "stream open" message
    assert not c.received and c.result() == ExitStatus(0, None)
    c.feed(b'{"status":"Fail')
    c.feed(b'ure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"42"}]}}')
    assert c.result() == ExitStatus(42, None)


def test_collector_is_bounded() -> None:
    c = StatusCollector(max_status=10)
    c.feed(b"x" * 100)
    assert c.truncated and len(c.payload) == 10
