"""The sans-I/O parts of the GitLab client: URL normalisation, the trace buffer, payload parsing."""

from __future__ import annotations

import re
import socket
import zlib

import pytest

from kuberunner.gitlab.client import _keepalive_socket, api_base
from kuberunner.gitlab.payload import PayloadError, parse_job, recover_id_and_token
from kuberunner.gitlab.trace_upload import TraceBuffer


@pytest.mark.parametrize(
    "url", ["https://gl.example/", "https://gl.example", "https://gl.example/ci", "https://gl.example/ci/"]
)
def test_api_base_strips_slash_and_ci(url: str) -> None:
    assert api_base(url) == "https://gl.example/api/v4"


def test_api_base_refuses_other_schemes() -> None:
    with pytest.raises(ValueError, match="only http and https"):
        api_base("ftp://gl.example")


def test_trace_buffer_chunks_rewinds_and_is_bounded() -> None:
    buffer = TraceBuffer(max_bytes=10)
    buffer.append(b"hello ")
    buffer.append(b"world, too long")
    assert (buffer.data(), buffer.dropped) == (b"hello worl", 11)
    assert buffer.checksum == f"crc32:{zlib.crc32(b'hello worl'):08x}"
    chunk = buffer.next_chunk(limit=4)
    assert chunk is not None and (chunk.start, chunk.data) == (0, b"hell")
    buffer.accepted(chunk)
    buffer.rewind(2)
    again = buffer.next_chunk()
    assert again is not None and (again.start, again.data) == (2, b"llo worl")
    buffer.rewind(99)
    assert buffer.next_chunk() is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a JSON object"),
        ({"id": 1}, "'id' and 'token' are required"),
        ({"id": True, "token": "t"}, "'id' must be an integer"),
        ({"id": 1, "token": "t", "variables": [{"key": 5}]}, "'variables[0].key' must be a string"),
        (
            {"id": 1, "token": "t", "steps": [{"name": "script", "when": "sometimes"}]},
            "'steps[0].when' must be on_success, on_failure or always",
        ),
    ],
    ids=["not-an-object", "no-token", "bool-id", "numeric-key", "bad-when"],
)
def test_malformed_payload_names_the_field(data: object, message: str) -> None:
    with pytest.raises(PayloadError, match=re.escape(message)):
        parse_job(data)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"id": 7, "token": "glcbt-a", "steps": [{"name": "scr', (7, "glcbt-a")),
        (b'{"id": 7, "job_info": {"id": 9, "token": "nested"}, "token": "glcbt-a", "x": }', (7, "glcbt-a")),
        (b'{"id": 7, "tok', (7, None)),
        (b'{"id": true, "token": ""}', (None, None)),
        (b"<html>502 Bad Gateway</html>", (None, None)),
    ],
    ids=["cut-short", "nested-fields-ignored", "no-token", "wrong-types", "not-json"],
)
def test_id_and_token_are_recovered_from_a_broken_payload(
    body: bytes, expected: tuple[object, object]
) -> None:
    assert recover_id_and_token(body) == expected


def test_sockets_to_gitlab_use_short_tcp_keepalive() -> None:
    info = socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)[0]
    with _keepalive_socket((info[0], info[1], info[2], info[3], info[4])) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        options = (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)
        assert [sock.getsockopt(socket.IPPROTO_TCP, o) for o in options] == [2, 1, 3]
