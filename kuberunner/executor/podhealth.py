"""Reads a pod object and says whether the job can still run in it (pure), plus the watcher that asks.

Deletion, eviction, a failed phase (activeDeadlineSeconds included) or any of the job's containers
(`build`, and `helper` when the pod has one) having ended all mean the job's outcome can no longer
come from its script: a system failure naming why. The pod is ready once all of them run.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from kuberunner.executor.backoff import Backoff
from kuberunner.executor.stages import BUILD_CONTAINER
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeError, NotFound

log = logging.getLogger(__name__)

_ONLY_BUILD = (BUILD_CONTAINER,)
_CANNOT_START = (
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
)


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


def _container_states(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each container's `state` by name; a container the kubelet has not reported yet is absent."""
    found: dict[str, dict[str, Any]] = {}
    for status in pod.get("status", {}).get("containerStatuses", []) or []:
        if isinstance(status, dict) and isinstance(status.get("name"), str):
            found[status["name"]] = dict(status.get("state") or {})
    return found


def assess(event_type: str, pod: dict[str, Any], *, containers: tuple[str, ...] = _ONLY_BUILD) -> PodState:
    """The job's view of one pod event (or a GET, as "MODIFIED"); `containers` are those the job needs."""
    name = _name(pod)
    if event_type == "DELETED":
        return Broken(f"pod {name} was deleted")
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return Broken(f"pod {name} is being deleted")
    status = pod.get("status", {})
    if status.get("reason") == "Evicted":
        return Broken(f"pod {name} was evicted: {status.get('message', '')}".rstrip(": "))
    states = _container_states(pod)
    for container in containers:
        state = states.get(container, {})
        if "terminated" in state:
            ended = state["terminated"]
            return Broken(
                f"pod {name}: container {container} ended: exit code {ended.get('exitCode')}, "
                f"reason {ended.get('reason', 'unknown')}"
            )
    phase = status.get("phase")
    if phase in ("Failed", "Succeeded"):
        why = status.get("reason")
        return Broken(f'pod {name} status is "{phase}"' + (f" ({why})" if why else ""))
    waiting_on = [c for c in containers if "running" not in states.get(c, {})]
    if not waiting_on:
        return Ready()
    for container in waiting_on:
        waiting = states.get(container, {}).get("waiting", {})
        if waiting.get("reason") in _CANNOT_START:
            return Broken(f"pod {name}: {waiting['reason']}: {waiting.get('message', '')}".rstrip(": "))
    waiting = states.get(waiting_on[0], {}).get("waiting", {})
    return Waiting(f"{phase or 'Pending'}" + (f": {waiting['reason']}" if waiting else ""))


async def wait_until_broken(
    *,
    client: KubeClient,
    namespace: str,
    name: str,
    backoff: Backoff,
    containers: tuple[str, ...] = _ONLY_BUILD,
) -> str:
    """Watch the pod until it can no longer run the job; returns why. Reconnects on its own."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            async for event_type, pod in client.watch_pod(namespace, name):
                backoff.healthy()
                state = assess(event_type, pod, containers=containers)
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
            state = assess("MODIFIED", await client.get_pod(namespace, name), containers=containers)
        except NotFound:
            return f"pod {namespace}/{name} was deleted"
        except KubeError:
            continue
        if isinstance(state, Broken):
            return state.reason
