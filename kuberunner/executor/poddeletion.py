"""Deleting the job's pod and waiting until its processes are gone.

A pod deleted with gracePeriodSeconds=0 leaves the API at once, but a real kubelet stops its
containers only afterwards, with the pod spec's grace period (at least 2 s): the job's processes
outlive a runner that has already exited. Deleted with a grace period instead, the pod stays
(with a deletionTimestamp) until the kubelet has stopped every container and removes it, so its
DELETED event says the processes are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from kuberunner.executor.retrying import is_transient
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeError, NotFound

CLEANUP_GRACE_SECONDS = 1
"""The grace the pod is deleted with when config.toml sets none: the runner already stopped the job,
nothing is left to wait for."""
GONE_WITHIN = 20.0
"""How long to wait for the kubelet to remove the pod; past it the runner goes on (its warning says so)."""


def cleanup_grace(configured: int | None) -> int:
    """config.toml's `cleanup_grace_period_seconds`, GitLab Runner's name, or the default.

    0 is kept as given: the API then removes the pod at once and the kubelet stops it afterwards."""
    return CLEANUP_GRACE_SECONDS if configured is None else configured


async def wait_until_gone(client: KubeClient, namespace: str, name: str, *, within: float) -> bool:
    """True once the pod no longer exists; False when it still does after `within` seconds."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while True:
                try:
                    pod = await client.get_pod(namespace, name)
                except NotFound:
                    return True
                except KubeError as exc:
                    if not is_transient(exc):
                        raise
                    # A dropped connection says nothing of the pod: ask again within the same bound.
                    await asyncio.sleep(0.2)
                    continue
                version = pod.get("metadata", {}).get("resourceVersion")
                events = client.watch_pod(namespace, name, resource_version=version)
                try:
                    with contextlib.suppress(KubeError):
                        async for kind, _ in events:
                            if kind == "DELETED":
                                return True
                finally:
                    if isinstance(events, AsyncGenerator):
                        # Closed when left early, so its connection never lingers until collected.
                        await events.aclose()
                await asyncio.sleep(0.2)  # the watch ended without DELETED: look again, not in a tight loop
    return False
