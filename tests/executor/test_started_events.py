"""The kubelet's `Started` events tell the runner its containers run before the pod's status does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kuberunner.executor.started_events import all_started, started_container
from kuberunner.kube.errors import Forbidden


def event(reason: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    involved: dict[str, Any] = {"kind": "Pod", "name": "p"}
    if field_path is not None:
        involved["fieldPath"] = field_path
    return {"reason": reason, "message": message, "involvedObject": involved}


@pytest.mark.parametrize(
    ("body", "container"),
    [
        pytest.param(
            event("Started", "Started container build", "spec.containers{build}"), "build", id="kubelet"
        ),
        pytest.param(event("Started", "Started container helper"), "helper", id="no-field-path"),
        pytest.param(
            event("Started", "Started container x", "spec.initContainers{x}"), "x", id="init-by-message"
        ),
        pytest.param(
            event("Created", "Created container: build", "spec.containers{build}"), None, id="created"
        ),
        pytest.param(event("Started", "something else"), None, id="unknown-message"),
    ],
)
def test_the_container_of_a_started_event(body: dict[str, Any], container: str | None) -> None:
    assert started_container(body) == container


class Events:
    """A client whose event watch delivers `events`, then ends or fails with `error`."""

    def __init__(self, events: list[dict[str, Any]], error: Exception | None = None) -> None:
        self.events = events
        self.error = error
        self.ended = asyncio.Event()

    async def watch_events(self, namespace: str, involved: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        assert (namespace, involved) == ("ns", "p")
        try:
            for body in self.events:
                yield "ADDED", body
            if self.error is not None:
                raise self.error
        finally:
            self.ended.set()


async def test_it_returns_once_every_container_started() -> None:
    client = Events(
        [
            event("Scheduled", "Successfully assigned ns/p to node"),
            event("Started", "Started container build", "spec.containers{build}"),
            event("Started", "Started container helper", "spec.containers{helper}"),
        ]
    )
    await asyncio.wait_for(all_started(client, namespace="ns", pod="p", containers=("build", "helper")), 10)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error", [None, Forbidden(403, "Forbidden", "events is forbidden")], ids=["stream-ended", "forbidden"]
)
async def test_without_every_started_event_only_the_pods_status_can_say(error: Exception | None) -> None:
    client = Events([event("Started", "Started container build", "spec.containers{build}")], error)
    waiting = asyncio.ensure_future(
        all_started(client, namespace="ns", pod="p", containers=("build", "helper"))  # type: ignore[arg-type]
    )
    await client.ended.wait()
    for _ in range(10):
        await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()
