"""attach (write), exec and log follow over real WebSocket/HTTP against the loopback fake."""

from __future__ import annotations

import asyncio
import time

import pytest

from kuberunner.kube import streams
from kuberunner.kube.channels import STDERR, STDOUT
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import (
    ApiStatusError,
    ExecStartError,
    Forbidden,
    NotFound,
    StreamIdle,
    StreamLost,
)
from kuberunner.kube.loglines import TimestampedLineSplitter

from .conftest import TOKEN
from .fakeapi import V4, V5, FakeApi, LogScript

LINE = b"sh /scripts/step_script >>/logs/out 2>&1 </dev/null &\n"


async def attach(client: KubeClient, data: bytes, pod: str = "p1") -> None:
    await streams.attach_write(client, namespace="default", pod=pod, container="build", data=data, timeout=5)


async def test_attach_v5_sends_stdin_exactly_then_closes_stdin(client: KubeClient, fake: FakeApi) -> None:
    await attach(client, LINE)
    assert fake.offered == [f"{V5},{V4}"] and fake.negotiated == [V5]
    assert bytes(fake.stdin["p1"]) == LINE
    assert fake.attach_messages == [b"\x00" + LINE, b"\xff\x00"]


async def test_attach_falls_back_to_v4_without_close_signal(client: KubeClient, fake: FakeApi) -> None:
    fake.v4_only = True
    await attach(client, LINE)
    assert fake.negotiated == [V4]
    assert bytes(fake.stdin["p1"]) == LINE
    assert all(m[:1] != b"\xff" for m in fake.attach_messages)


async def test_attach_large_binary_write_arrives_exactly(client: KubeClient, fake: FakeApi) -> None:
    data = bytes(range(256)) * 1000  # 256 kB, every byte value, several frames
    await attach(client, data)
    await attach(client, b"second\n")  # stdin stays usable for the next stage
    assert bytes(fake.stdin["p1"]) == data + b"second\n"


async def test_attach_missing_pod_is_not_found(client: KubeClient) -> None:
    with pytest.raises(NotFound) as err:
        await attach(client, LINE, pod="gone")
    assert err.value.message == 'pods "gone" not found'


async def test_attach_to_a_stopped_container_raises_its_status(client: KubeClient, fake: FakeApi) -> None:
    fake.add_pod("stopped")
    with pytest.raises(ApiStatusError) as err:
        await attach(client, LINE, pod="stopped")
    assert (err.value.code, err.value.reason) == (500, "InternalError")
    assert "is not running" in err.value.message


@pytest.mark.parametrize("v4_only", [False, True])
async def test_attach_dropped_before_confirmation_is_stream_lost(client: KubeClient, fake: FakeApi,
                                                                 v4_only: bool) -> None:
    fake.v4_only = v4_only
    fake.add_pod("dropper")
    with pytest.raises(StreamLost, match="delivery unknown"):
        await attach(client, LINE, pod="dropper")
    assert bytes(fake.stdin["dropper"]) == LINE  # it did arrive: only the caller can judge a retry


async def test_attach_forbidden(client: KubeClient, fake: FakeApi) -> None:
    fake.forbid = True
    with pytest.raises(Forbidden) as err:
        await attach(client, LINE)
    assert err.value.code == 403 and "cannot" in err.value.message


async def run_exec(client: KubeClient, *command: str) -> tuple[bytes, bytes, int]:
    out, err = bytearray(), bytearray()
    async with await streams.open_exec(client, namespace="default", pod="p1", container="build",
                                       command=command, timeout=5) as session:
        async for frame in session.output():
            (out if frame.channel == STDOUT else err).extend(frame.data)
            assert frame.channel in (STDOUT, STDERR)
        return bytes(out), bytes(err), await session.wait()


@pytest.mark.parametrize("code", [0, 3])
async def test_exec_exit_code_and_separate_streams(client: KubeClient, code: int) -> None:
    assert await run_exec(client, "exit", str(code)) == (b"out\n", b"err\n", code)


async def test_exec_keeps_raw_bytes_across_frames(client: KubeClient) -> None:
    out, _, code = await run_exec(client, "bytes")
    assert out == "\u20ac\n".encode() + b"\xff\xfe\x00" and code == 0


async def test_exec_command_args_arrive_in_order(client: KubeClient) -> None:
    assert await run_exec(client, "echo", "a b", "c") == (b"a b c\n", b"", 0)


async def test_exec_command_that_cannot_start_is_exec_start_error(client: KubeClient) -> None:
    with pytest.raises(ExecStartError, match="executable file not found"):
        await run_exec(client, "nosuch")


async def test_exec_dropped_connection_is_stream_lost(client: KubeClient) -> None:
    with pytest.raises(StreamLost):
        await run_exec(client, "drop")


@pytest.mark.parametrize("v4_only", [False, True])
async def test_exec_stdin_round_trip(client: KubeClient, fake: FakeApi, v4_only: bool) -> None:
    fake.v4_only = v4_only
    async with await streams.open_exec(client, namespace="default", pod="p1", container="build",
                                       command=["cat"], stdin=True, timeout=5) as session:
        await session.write_stdin(b"ping\n")
        first = await anext(aiter(session.output()))
        assert first.data == b"ping\n"
        if session.protocol == V5:
            await session.close_stdin()
            assert await session.wait() == 0
        else:
            assert session.protocol == V4
            await session.close_stdin()  # a no-op on v4: the session stays open
            await session.write_stdin(b"still open\n")
            assert (await anext(aiter(session.output()))).data == b"still open\n"


async def test_black_hole_is_detected_by_heartbeat(client: KubeClient) -> None:
    heartbeat = 0.4
    session = await streams.open_exec(client, namespace="default", pod="p1", container="build",
                                      command=["blackhole"], heartbeat=heartbeat, timeout=5)
    started = time.monotonic()
    with pytest.raises(StreamLost, match="PONG"):
        await asyncio.wait_for(session.wait(), 10 * heartbeat)  # without a heartbeat: TimeoutError
    elapsed = time.monotonic() - started
    await session.close()
    assert elapsed < 2 * heartbeat + 0.2


async def test_exec_missing_pod_is_not_found(client: KubeClient) -> None:
    with pytest.raises(NotFound):
        await streams.open_exec(client, namespace="default", pod="gone", container="build", command=["true"])


async def collect_log(client: KubeClient, **kw: object) -> bytes:
    chunks = [c async for c in streams.follow_log(client, namespace="default", pod="p1", container="build",
                                                  **kw)]  # type: ignore[arg-type]
    return b"".join(chunks)


async def test_log_streams_body_and_sends_query(client: KubeClient, fake: FakeApi) -> None:
    fake.logs["p1"] = LogScript([b"2025-01-01T00:00:01.000000000Z a\n", b"2025-01-01T00:00:02.0000",
                                 b"00000Z b\n"])
    body = await collect_log(client, timestamps=True, since_time="2025-01-01T00:00:01Z")
    assert body == b"2025-01-01T00:00:01.000000000Z a\n2025-01-01T00:00:02.000000000Z b\n"
    assert fake.requests[-1][2] == {"container": "build", "follow": "true", "timestamps": "true",
                                    "sinceTime": "2025-01-01T00:00:01Z"}


async def test_log_chunks_respect_the_limit(client: KubeClient, fake: FakeApi) -> None:
    fake.logs["p1"] = LogScript([b"x" * 10000])
    chunks = [c async for c in streams.follow_log(client, namespace="default", pod="p1", container="build",
                                                  chunk_limit=1000)]
    assert b"".join(chunks) == b"x" * 10000 and max(map(len, chunks)) <= 1000


async def test_log_waiting_to_start_is_status_400(client: KubeClient, fake: FakeApi) -> None:
    fake.logs["p1"] = LogScript(waiting="ContainerCreating")
    with pytest.raises(ApiStatusError) as err:
        await collect_log(client)
    assert err.value.code == 400 and err.value.reason == "BadRequest"
    assert err.value.message == 'container "build" in pod "p1" is waiting to start: ContainerCreating'


async def test_log_cut_mid_body_is_stream_lost_after_the_bytes_so_far(client: KubeClient,
                                                                      fake: FakeApi) -> None:
    fake.logs["p1"] = LogScript([b"first\n", b"second"], then="cut")
    got = bytearray()
    with pytest.raises(StreamLost):
        async for chunk in streams.follow_log(client, namespace="default", pod="p1", container="build"):
            got += chunk
    assert bytes(got) == b"first\nsecond"


async def test_log_silence_past_read_timeout_is_stream_idle(client: KubeClient, fake: FakeApi) -> None:
    fake.logs["p1"] = LogScript([b"hi\n"], then="hang")
    started = time.monotonic()
    with pytest.raises(StreamIdle):
        await collect_log(client, read_timeout=0.3)
    assert time.monotonic() - started < 2


async def test_log_missing_pod_is_not_found(client: KubeClient) -> None:
    with pytest.raises(NotFound):
        [c async for c in streams.follow_log(client, namespace="default", pod="gone", container="build")]


async def test_five_mebibyte_log_line_through_the_splitter(client: KubeClient, fake: FakeApi) -> None:
    line = b"y" * (5 * 1024 * 1024)
    ts = b"2025-01-01T00:00:01.000000000Z "
    fake.logs["p1"] = LogScript([ts + line[: 3 << 20], line[3 << 20 :] + b"\n", ts + b"end\n"])
    splitter = TimestampedLineSplitter(max_line=1 << 20)
    records = []
    async for chunk in streams.follow_log(client, namespace="default", pod="p1", container="build",
                                          timestamps=True):
        records += splitter.feed(chunk)
    assert b"".join(r.content for r in records[:-1]) == line
    assert records[-1].content == b"end" and records[-1].complete


async def test_streams_send_the_bearer_token(client: KubeClient, fake: FakeApi) -> None:
    fake.logs["p1"] = LogScript([b"x"])
    await attach(client, b"x")
    await run_exec(client, "exit", "0")
    await collect_log(client)
    assert {kind for kind, header in fake.auth_seen if header == f"Bearer {TOKEN}"} == {"ws", "log"}
