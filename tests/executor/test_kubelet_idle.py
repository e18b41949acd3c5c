"""A quiet container (the helper, for all of step_script) must not use up the unreachable budget."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from kuberunner.executor.backoff import Backoff
from kuberunner.executor.file_transport import TransportError
from kuberunner.executor.kubelet_transport import KubeletLogReader
from kuberunner.kube import streams
from kuberunner.kube.errors import ApiUnreachable, StreamIdle

TS = "2026-11-27T10:00:01.000000001Z"


def scripted(failures: list[Exception]) -> Any:
    """A follow_log that fails as listed, one failure per call, then delivers one record."""

    async def follow_log(*_: object, **__: object) -> AsyncIterator[bytes]:
        if failures:
            raise failures.pop(0)
        yield f"{TS} hello\n".encode()

    return follow_log


def reader_of(container: str, *, budget: float) -> KubeletLogReader:
    """A reader of the follow_log the test put in place (no client is ever used)."""
    return KubeletLogReader(
        client=None,  # type: ignore[arg-type]
        namespace="ns",
        pod="p",
        container=container,
        backoff=Backoff(first=0.01, cap=0.01, budget=budget),
    )


async def first_chunk(monkeypatch: pytest.MonkeyPatch, failures: list[Exception]) -> bytes:
    monkeypatch.setattr(streams, "follow_log", scripted(failures))
    reader = reader_of("helper", budget=0.05)
    chunks = reader.chunks()
    assert isinstance(chunks, AsyncGenerator)
    try:
        return await anext(chunks)
    finally:
        await chunks.aclose()


async def test_idle_streams_are_renewed_without_end(monkeypatch: pytest.MonkeyPatch) -> None:
    assert await first_chunk(monkeypatch, [StreamIdle("idle") for _ in range(20)]) == b"hello\n"


async def test_an_unreachable_api_still_ends_at_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TransportError, match="stayed unreachable"):
        await first_chunk(monkeypatch, [ApiUnreachable("refused") for _ in range(20)])


async def test_a_resume_past_the_last_line_read_signals_a_possible_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a rotation the kubelet serves a file that starts later than the last line read."""
    bodies = [b"2026-11-27T10:00:01.000000001Z before\n", b"2026-11-27T10:00:15.000000001Z after\n"]

    async def follow_log(*_: object, **__: object) -> AsyncIterator[bytes]:
        yield bodies.pop(0)
        raise StreamIdle("idle")

    monkeypatch.setattr(streams, "follow_log", follow_log)
    reader = reader_of("build", budget=5)
    chunks = reader.chunks()
    assert isinstance(chunks, AsyncGenerator)
    try:
        assert await anext(chunks) == b"before\n"
        assert not reader.gaps.is_set()
        assert await anext(chunks) == b"after\n"
        assert reader.gaps.is_set()
    finally:
        await chunks.aclose()
