"""Test doubles for the API-server half: a fake kubelet, a kubectl runner, manifests.

The fake kubelet marks pods Running at once and removes them `delete_delay` seconds after a graceful
delete begins, so API behaviour is tested without processes.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from kuberunner.cluster.contracts import ObjectStore, RawObject
from kuberunner.cluster.status import bad_request

KUBECTL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"


class FakeKubelet:
    """contracts.Kubelet without processes: Running on add, gone `delete_delay` s (at most the grace
    period) after a delete."""

    def __init__(self, store: ObjectStore, *, delete_delay: float = 0.2) -> None:
        self.store = store
        self.delete_delay = delete_delay
        self.added: list[str] = []
        self.deleting: list[tuple[str, int]] = []
        self.updated: list[str] = []
        self.shut_down = False
        self._timers: list[asyncio.TimerHandle] = []

    async def pod_added(self, pod: RawObject) -> None:
        meta = pod["metadata"]
        self.added.append(meta["name"])

        def run(p: RawObject) -> None:
            p["status"]["phase"] = "Running"
            p["status"]["containerStatuses"] = [
                {
                    "name": c["name"],
                    "ready": True,
                    "restartCount": 0,
                    "image": c["image"],
                    "imageID": "",
                    "containerID": "containerd://fake",
                    "started": True,
                    "state": {"running": {"startedAt": p["status"]["startTime"]}},
                }
                for c in p["spec"]["containers"]
            ]
            p["status"]["conditions"].append(
                {
                    "type": "Ready",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": p["status"]["startTime"],
                }
            )

        self.store.update_pod(meta["namespace"], meta["name"], run)

    async def pod_updated(self, pod: RawObject) -> None:
        self.updated.append(pod["metadata"]["name"])

    async def pod_deleting(self, pod: RawObject, grace_seconds: int) -> None:
        meta = pod["metadata"]
        self.deleting.append((meta["name"], grace_seconds))
        if grace_seconds > 0:
            # At the latest when the grace period ends, as a real node kills what ignores SIGTERM.
            delay = min(self.delete_delay, grace_seconds)
            loop = asyncio.get_running_loop()
            self._timers.append(
                loop.call_later(delay, self.store.remove_pod, meta["namespace"], meta["name"], meta["uid"])
            )

    async def handle_log(self, request: web.Request, pod: RawObject) -> web.StreamResponse:
        return web.Response(text=f"log of {pod['metadata']['name']}\n", content_type="text/plain")

    async def handle_attach(self, request: web.Request, pod: RawObject) -> web.StreamResponse:
        raise RuntimeError("fake kubelet cannot attach")

    async def handle_exec(self, request: web.Request, pod: RawObject) -> web.StreamResponse:
        raise bad_request("Upgrade request required")

    async def shutdown(self) -> None:
        self.shut_down = True
        for timer in self._timers:
            timer.cancel()


@dataclass
class Ran:
    rc: int
    out: str
    err: str


@dataclass
class Kubectl:
    """Real kubectl against the cluster, with a private HOME and discovery cache; `namespace` is the
    default for every command (a later `-n` wins)."""

    kubeconfig: Path
    home: Path
    namespace: str | None = None
    binary: Path = KUBECTL

    def argv(self, *args: str) -> list[str]:
        namespaced = ["--namespace", self.namespace] if self.namespace else []
        return [
            str(self.binary),
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.home / "cache"),
            *namespaced,
            *args,
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "KUBECONFIG": ""}

    async def __call__(self, *args: str, stdin: bytes | None = None, limit: float = 30) -> Ran:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(),
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin), limit)
        assert proc.returncode is not None
        return Ran(proc.returncode, out.decode(), err.decode())

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.argv(*args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self.env()
        )


def pod_manifest(name: str, *, image: str = "busybox:1.36", **spec: Any) -> RawObject:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}], **spec},
    }
