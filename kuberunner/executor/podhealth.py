"""Reads a pod object and says whether the job can still run in it (pure), plus the watcher that asks.

Deletion, eviction, a failed phase (activeDeadlineSeconds included) or a build container that has
ended all mean the job's outcome can no longer come from its script: a system failure naming why.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from kuberunner.executor.backoff import Backoff
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeError, NotFound

log = logging.getLogger(__name__)

BUILD_CONTAINER = "build"


@dataclass(frozen=True, slots=True)
class Waiting:
    message: str


@dataclass(frozen=True, slots=True)
class Ready:
    pass


@dataclass(frozen=True, slots=True)
class Broken:
    reason: str


PodState = Waiting | Ready | Broken


def _name(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata", {})
    return f"{meta.get('namespace', '?')}/{meta.get('name', '?')}"


def _build_status(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in pod.get("status", {}).get("containerStatuses", []) or []:
        if status.get("name") == BUILD_CONTAINER:
            return dict(status)
    return None


def assess(event_type: str, pod: dict[str, Any]) -> PodState:
    """The job's view of one pod event (or a GET, as "MODIFIED")."""
    name = _name(pod)
    if event_type == "DELETED":
        return Broken(f"pod {name} was deleted")
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return Broken(f"pod {name} is being deleted")
    status = pod.get("status", {})
    if status.get("reason") == "Evicted":
        return Broken(f"pod {name} was evicted: {status.get('message', '')}".rstrip(": "))
    build = _build_status(pod)
    state = (build or {}).get("state", {})
    if "terminated" in state:
        ended = state["terminated"]
        return Broken(
            f"pod {name}: container {BUILD_CONTAINER} ended: exit code {ended.get('exitCode')}, "
            f"reason {ended.get('reason', 'unknown')}"
        )
    phase = status.get("phase")
    if phase in ("Failed", "Succeeded"):
        why = status.get("reason")
        return Broken(f'pod {name} status is "{phase}"' + (f" ({why})" if why else ""))
    if "running" in state:
        return Ready()
    waiting = state.get("waiting", {})
    if waiting.get("reason") in (
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    ):
        return Broken(f"pod {name}: {waiting['reason']}: {waiting.get('message', '')}".rstrip(": "))
    return Waiting(f"{phase or 'Pending'}" + (f": {waiting['reason']}" if waiting else ""))


async def wait_until_broken(*, client: KubeClient, namespace: str, name: str, backoff: Backoff) -> str:
    """Watch the pod until it can no longer run the job; returns why. Reconnects on its own."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            async for event_type, pod in client.watch_pod(namespace, name):
                backoff.healthy()
                state = assess(event_type, pod)
                if isinstance(state, Broken):
                    return state.reason
        except NotFound:
            return f"pod {namespace}/{name} was deleted"
        except KubeError as exc:
            log.info("watch of pod %s/%s failed: %s", namespace, name, exc)
            delay = backoff.failed(loop.time())
            if delay is None:
                return f"the Kubernetes API stayed unreachable: {exc}"
            await asyncio.sleep(delay)
            continue
        # A watch that ends cleanly (server timeout) is simply renewed; check the pod still exists.
        try:
            state = assess("MODIFIED", await client.get_pod(namespace, name))
        except NotFound:
            return f"pod {namespace}/{name} was deleted"
        except KubeError:
            continue
        if isinstance(state, Broken):
            return state.reason
