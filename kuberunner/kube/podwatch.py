"""Following one pod's changes without trusting the watch connection to say when it died.

A watch on a silent connection (half-open: the socket is established, every byte is dropped) looks
exactly like a watch on a quiet pod; the server's timeout or our 330 s idle bound notice it only
after minutes. So beside the watch, whenever it has said nothing for `Liveness.probe_every`, the
pod is read with a GET (short timeout, a new connection once a silence is suspected):

- the GET shows a resourceVersion the watch never delivered: the watch missed a change, so it is
  dead or lagging. The GET's pod is handed on, and the watch is replaced by one from that version;
- the GET says 404: the pod is gone; a DELETED event is handed on (with the last pod seen);
- the GET agrees with the watch: the pod is just quiet. A watch quiet for `replace_after` is
  replaced anyway, from the last version seen, so a silent one does not linger until the next change.

A replacement starts from the last resourceVersion handed on (or a bookmark's), so nothing is lost;
an event whose version was already handed on (the GET got there first) is dropped, so nothing is
repeated. A 410 `Expired` re-lists. Errors go to the caller's `RetryPolicy`, which sleeps or gives up
by raising; the policy also hears of every success, so a long healthy stretch restores its budget.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import Expired, KubeError, NotFound

Event = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Liveness:
    probe_every: float = 3.0
    """A GET after this long without a watch event: the bound on noticing a silent watch when the
    pod changes (GitLab Runner polls every 3 s while a pod starts; client-go notices in ~45 s)."""
    probe_timeout: float = 3.0
    """A probe is one small GET; one that takes longer is treated as a silent connection. The GET
    that follows a failed one has the client's full request timeout: it goes over a new connection
    (the client is suspicious by then), so slowness there is a slow server, not a silent socket."""
    replace_after: float = 30.0
    """A watch that has said nothing this long is replaced even while GETs agree with it."""


DEFAULT_LIVENESS = Liveness()


class RetryPolicy(Protocol):
    def healthy(self) -> None:
        """The API answered."""

    async def failed(self, exc: KubeError) -> None:
        """Wait before the next try, or raise to give up."""


ProbeOutcome = Literal["quiet", "missed", "stale"]


def judge_probe(*, seen: str | None, got: str | None, quiet_for: float, liveness: Liveness) -> ProbeOutcome:
    """What a GET that found version `got` says about a watch that handed on `seen` last."""
    if got != seen:
        return "missed"
    if quiet_for >= liveness.replace_after:
        return "stale"
    return "quiet"


_ENDED = object()


def _version(obj: dict[str, Any]) -> str | None:
    meta = obj.get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return version if isinstance(version, str) and version else None


async def _pump(
    client: KubeClient, namespace: str, name: str, since: str | None, queue: asyncio.Queue[object]
) -> None:
    try:
        async for event in client.watch_pod(namespace, name, resource_version=since, bookmarks=True):
            await queue.put(event)
        await queue.put(_ENDED)
    except KubeError as exc:
        await queue.put(exc)


async def follow_pod(
    client: KubeClient,
    *,
    namespace: str,
    name: str,
    retry: RetryPolicy,
    liveness: Liveness = DEFAULT_LIVENESS,
    queue_size: int = 16,
) -> AsyncGenerator[Event, None]:
    """`(type, pod)` for each change of the pod, starting with its current state; ends after
    DELETED. Runs until then, or until `retry.failed` raises."""
    loop = asyncio.get_running_loop()
    seen: str | None = None  # version of the last pod handed on
    since: str | None = None  # where the next watch starts (a bookmark may move it past `seen`)
    last_pod: dict[str, Any] = {"metadata": {"namespace": namespace, "name": name}}
    while True:
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=queue_size)
        pump = asyncio.create_task(
            _pump(client, namespace, name, since, queue), name=f"watch {namespace}/{name}"
        )
        heard = loop.time()
        probe_now = False  # the last probe failed: probe again at once, with the full timeout
        try:
            while True:
                item: object = None
                retrying_probe, probe_now = probe_now, False
                if not retrying_probe:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(liveness.probe_every):
                            item = await queue.get()
                if item is _ENDED:
                    break
                if isinstance(item, Expired):
                    since = None  # re-list: the next watch starts with the current state
                    break
                if isinstance(item, KubeError):
                    await retry.failed(item)
                    break
                if isinstance(item, tuple):
                    heard = loop.time()
                    retry.healthy()
                    kind, obj = item
                    version = _version(obj)
                    if kind == "BOOKMARK":
                        since = version or since
                        continue
                    if version is not None and version == seen:
                        continue
                    seen = since = version
                    last_pod = obj
                    yield kind, obj
                    if kind == "DELETED":
                        return
                    continue
                # The watch said nothing for probe_every: ask the pod itself.
                try:
                    pod = await client.get_pod(
                        namespace, name, timeout=None if retrying_probe else liveness.probe_timeout
                    )
                except NotFound:
                    yield "DELETED", last_pod
                    return
                except KubeError as exc:
                    await retry.failed(exc)
                    probe_now = True
                    continue
                retry.healthy()
                if not queue.empty():
                    continue  # the watch spoke meanwhile: it is alive, and its events come first
                outcome = judge_probe(
                    seen=seen, got=_version(pod), quiet_for=loop.time() - heard, liveness=liveness
                )
                if outcome == "missed":
                    seen = since = _version(pod)
                    last_pod = pod
                    yield "MODIFIED", pod
                    break
                if outcome == "stale":
                    break
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
