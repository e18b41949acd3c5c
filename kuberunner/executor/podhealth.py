"""Reads a pod object and says whether the job can still run in it (pure), plus the waits that ask:
until the pod runs, and then until it breaks, both through `kube.podwatch` (a watch with a GET beside
it, so a silent connection is noticed in seconds, not when the watch times out).

Deletion, eviction, a failed phase (activeDeadlineSeconds included) or any of the job's containers
(`build`, and `helper` when the pod has one) having ended all mean the job's outcome can no longer
come from its script: a system failure naming why. The pod is ready once all of them run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from kuberunner.executor import retrying
from kuberunner.executor.backoff import Backoff
from kuberunner.executor.stages import BUILD_CONTAINER
from kuberunner.kube import podwatch
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeError, NotFound

log = logging.getLogger(__name__)

_ONLY_BUILD = (BUILD_CONTAINER,)
_PULL_FAILED = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull")
"""Waiting reasons a different pull policy may cure: the runner tries the next one (`job`)."""
_CANNOT_START = (
    *_PULL_FAILED,
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
    image_pull: bool = False
    """The pod broke because an image could not be pulled (or, with `Never`, was not there)."""


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
            return Broken(
                f"pod {name}: {waiting['reason']}: {waiting.get('message', '')}".rstrip(": "),
                image_pull=waiting["reason"] in _PULL_FAILED,
            )
    waiting = states.get(waiting_on[0], {}).get("waiting", {})
    if waiting:
        return Waiting(f"{phase or 'Pending'}: {waiting['reason']}")
    return Waiting(f"{phase or 'Pending'}" + _unscheduled(status))


def _unscheduled(status: dict[str, Any]) -> str:
    """Why the scheduler has not placed the pod (a node selector no node matches, a taint, no room),
    as GitLab Runner shows it; empty while it simply has not got to it yet."""
    for condition in status.get("conditions") or []:
        if (
            isinstance(condition, dict)
            and condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason")
        ):
            message = condition.get("message")
            return f": {condition['reason']}" + (f': "{message}"' if message else "")
    return ""


def starting(poll_interval: float) -> podwatch.Liveness:
    """While the pod starts, the GET beside the watch comes every `poll_interval` s (config.toml's
    `poll_interval`, 3 by default: GitLab Runner polls the pod that often). Shorter periods cost: with
    200 jobs starting at once (bench/concurrency.py) a loaded API server timed probes out by the
    hundred, and every timeout sent the client's REST calls to new connections: more load."""
    return podwatch.Liveness(probe_every=poll_interval, probe_timeout=4.0)


STARTING = starting(3.0)


RUNNING = podwatch.Liveness(probe_every=2.5, probe_timeout=4.0)
"""During the job a deleted pod is noticed within about probe_every + probe_timeout + one GET, even
when every open connection went silent (one probe may time out on a silent pooled connection)."""


DEATH_REPORTED_WITHIN = 3.0
"""How long a failed attach or exec waits for the pod's status before its own error is the job's.
When PID 1 dies (SIGKILL, OOM), a real API server answers attach and exec with 500 "container not
found" a moment before the kubelet reports the container terminated (its relist runs every second);
the status says why ("exit code 137, reason OOMKilled"), the error does not."""


async def reason_or(broken: asyncio.Future[str], fallback: str) -> str:
    """The pod's reason for breaking if it comes within DEATH_REPORTED_WITHIN, else `fallback`."""
    if not broken.done():
        await asyncio.wait([broken], timeout=DEATH_REPORTED_WITHIN)
    return broken.result() if broken.done() else fallback


class GaveUp(Exception):
    """The API stayed unreachable past the job's budget."""


class _BackoffRetry:
    """The job's API budget as a `podwatch.RetryPolicy`: transient errors wait, others are raised."""

    def __init__(self, backoff: Backoff) -> None:
        self._backoff = backoff

    def healthy(self) -> None:
        self._backoff.healthy()

    async def failed(self, exc: KubeError) -> None:
        if not retrying.is_transient(exc):
            raise exc
        log.info("following the pod failed: %s", exc)
        delay = self._backoff.failed(asyncio.get_running_loop().time())
        if delay is None:
            raise GaveUp(f"the Kubernetes API stayed unreachable: {exc}") from exc
        await asyncio.sleep(delay)


async def _states(
    *,
    client: KubeClient,
    namespace: str,
    name: str,
    backoff: Backoff,
    containers: tuple[str, ...],
    liveness: podwatch.Liveness,
) -> AsyncGenerator[PodState, None]:
    """The job's view of the pod after each change; ends with a Broken state."""
    events = podwatch.follow_pod(
        client, namespace=namespace, name=name, retry=_BackoffRetry(backoff), liveness=liveness
    )
    try:
        async with contextlib.aclosing(events):
            async for event_type, pod in events:
                state = assess(event_type, pod, containers=containers)
                yield state
                if isinstance(state, Broken):
                    return
    except GaveUp as exc:
        yield Broken(str(exc))
        return
    except NotFound:
        yield Broken(f"pod {namespace}/{name} was deleted")
        return
    yield Broken(f"the watch of pod {namespace}/{name} ended")


async def wait_until_ready(
    *,
    client: KubeClient,
    namespace: str,
    name: str,
    backoff: Backoff,
    containers: tuple[str, ...] = _ONLY_BUILD,
    on_waiting: Callable[[str], None],
    liveness: podwatch.Liveness = STARTING,
) -> Broken | None:
    """None once every container runs; otherwise why the job cannot run. `on_waiting` hears each new
    waiting message. Raises a non-transient `KubeError` (403, 422…) as is."""
    states = _states(
        client=client,
        namespace=namespace,
        name=name,
        backoff=backoff,
        containers=containers,
        liveness=liveness,
    )
    last = ""
    async with contextlib.aclosing(states):
        async for state in states:
            if isinstance(state, Ready):
                return None
            if isinstance(state, Broken):
                return state
            if state.message != last:
                last = state.message
                on_waiting(state.message)
    return Broken(f"the watch of pod {namespace}/{name} ended")


async def wait_until_broken(
    *,
    client: KubeClient,
    namespace: str,
    name: str,
    backoff: Backoff,
    containers: tuple[str, ...] = _ONLY_BUILD,
    liveness: podwatch.Liveness = RUNNING,
) -> str:
    """Follow the pod until it can no longer run the job; returns why. Reconnects on its own."""
    states = _states(
        client=client,
        namespace=namespace,
        name=name,
        backoff=backoff,
        containers=containers,
        liveness=liveness,
    )
    try:
        async with contextlib.aclosing(states):
            async for state in states:
                if isinstance(state, Broken):
                    return state.reason
    except KubeError as exc:
        return f"following pod {namespace}/{name} failed: {exc}"
    return f"the watch of pod {namespace}/{name} ended"
