"""Test doubles for the kubelet half: an in-memory ObjectStore and a tiny HTTP app routing to the kubelet.

The API-server half is faked here so the kubelet is tested on its own, over real HTTP/WebSocket
and with real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kuberunner.cluster.contracts import RawObject
from kuberunner.cluster.node.kubelet import LocalKubelet
from kuberunner.cluster.status import StatusError, not_found


@dataclass
class FakeStore:
    """contracts.ObjectStore in memory, with a change signal tests can await."""

    objects: dict[tuple[str, str, str], RawObject] = field(default_factory=dict)
    events: list[dict[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _touch(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def put(self, resource: str, obj: RawObject) -> None:
        meta = obj["metadata"]
        self.objects[(resource, meta.get("namespace", "default"), meta["name"])] = obj
        self._touch()

    def get(self, resource: str, namespace: str, name: str) -> RawObject | None:
        obj = self.objects.get((resource, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def update_pod(self, namespace: str, name: str, mutate: Callable[[RawObject], None]) -> RawObject | None:
        pod = self.objects.get(("pods", namespace, name))
        if pod is None:
            return None
        mutate(pod)
        self._touch()
        return copy.deepcopy(pod)

    def remove_pod(self, namespace: str, name: str, uid: str) -> None:
        pod = self.objects.get(("pods", namespace, name))
        if pod is not None and pod["metadata"].get("uid") == uid:
            del self.objects[("pods", namespace, name)]
            self.removed.append(name)
            self._touch()

    def record_event(self, involved: RawObject, *, reason: str, message: str, type_: str = "Normal") -> None:
        self.events.append(
            {"name": involved["metadata"]["name"], "reason": reason, "message": message, "type": type_}
        )
        self._touch()

    async def wait_for(self, predicate: Callable[[], Any], within: float = 20.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("condition not reached in time")
            event = self.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.5))


@dataclass
class Node:
    """A kubelet plus the fake store and an HTTP server in front of it."""

    store: FakeStore
    kubelet: LocalKubelet
    url: str
    http: aiohttp.ClientSession
    state_dir: Path

    async def create_pod(self, name: str, containers: list[dict[str, Any]], **spec: Any) -> RawObject:
        pod: RawObject = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {
                "containers": containers,
                "restartPolicy": "Never",
                "nodeName": "node1",
                "terminationGracePeriodSeconds": 30,
                **spec,
            },
            "status": {"phase": "Pending"},
        }
        self.store.put("pods", pod)
        await self.kubelet.pod_added(copy.deepcopy(pod))
        return pod

    def pod(self, name: str) -> RawObject | None:
        return self.store.get("pods", "default", name)

    def status(self, name: str, container: str | None = None) -> dict[str, Any]:
        pod = self.pod(name) or {}
        statuses = pod.get("status", {}).get("containerStatuses", []) + pod.get("status", {}).get(
            "initContainerStatuses", []
        )
        for status in statuses:
            if container is None or status["name"] == container:
                return dict(status)
        return {}

    async def wait_state(self, name: str, state: str, container: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.store.wait_for(
            lambda: self.status(name, container).get("state", {}).get(state)
        )
        return result

    async def wait_phase(self, name: str, phases: Iterable[str]) -> RawObject:
        wanted = set(phases)
        pod: RawObject = await self.store.wait_for(
            lambda: (p := self.pod(name)) is not None and p["status"].get("phase") in wanted and p
        )
        return pod

    async def delete(self, name: str, grace: int) -> None:
        pod = self.pod(name)
        assert pod is not None
        if grace == 0:
            self.store.objects.pop(("pods", "default", name))
        await self.kubelet.pod_deleting(pod, grace)

    def host_pid(self, name: str, container: str | None = None) -> int:
        worker = next(w for w in self.kubelet.workers.values() if w.name == name)
        running = worker.running[container or worker.state.apps[0].name]
        return running.pid

    def path(self, name: str) -> str:
        return f"{self.url}/api/v1/namespaces/default/pods/{name}"


def _app(store: FakeStore, kubelet: LocalKubelet) -> web.Application:
    @web.middleware
    async def statuses(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except StatusError as exc:
            return exc.response()

    async def route(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        pod = store.get("pods", request.match_info["ns"], name)
        if pod is None:
            raise not_found("pods", name)
        sub = request.match_info["sub"]
        if sub == "log":
            return await kubelet.handle_log(request, pod)
        if sub == "attach":
            return await kubelet.handle_attach(request, pod)
        return await kubelet.handle_exec(request, pod)

    app = web.Application(middlewares=[statuses])
    app.router.add_route("*", "/api/v1/namespaces/{ns}/pods/{name}/{sub:log|attach|exec}", route)
    return app


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    store = FakeStore()
    kubelet = LocalKubelet(
        store=store,
        state_dir=tmp_path / "state",
        node_name="node1",
        cgroup_root=Path(f"/sys/fs/cgroup/memory/kuberunner-test-{os.getpid()}"),
    )
    server = TestServer(_app(store, kubelet), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        try:
            yield Node(store, kubelet, f"http://127.0.0.1:{server.port}", http, tmp_path / "state")
        finally:
            await kubelet.shutdown()
            await server.close()


def container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox:1.36", "command": ["sh", "-c", script], **extra}
