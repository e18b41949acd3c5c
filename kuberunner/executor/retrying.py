"""Calls to the Kubernetes API that ride out dropped connections, within the job's API budget.

A failure is retried when it says nothing about the request itself: the connection was refused,
reset or went quiet, or the server answered 5xx/429. Anything else (404, 403, 422…) is an answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kuberunner.executor.backoff import Backoff
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import AlreadyExists, ApiStatusError, ApiUnreachable, KubeError, StreamLost

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_transient(exc: KubeError) -> bool:
    if isinstance(exc, ApiUnreachable | StreamLost):
        return True
    return isinstance(exc, ApiStatusError) and (exc.code >= 500 or exc.code == 429)


async def retry(call: Callable[[], Awaitable[T]], *, budget: float, what: str) -> T:
    """`call()` until it answers; its last transient error once the budget is spent."""
    loop = asyncio.get_running_loop()
    backoff = Backoff(budget=budget)
    while True:
        try:
            return await call()
        except KubeError as exc:
            if not is_transient(exc):
                raise
            delay = backoff.failed(loop.time())
            if delay is None:
                raise
            log.info("%s failed (%s); trying again in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)


async def create_once(
    client: KubeClient,
    *,
    create: Callable[[], Awaitable[dict[str, Any]]],
    read: Callable[[], Awaitable[dict[str, Any]]],
    budget: float,
    what: str,
) -> dict[str, Any]:
    """Create an object under a fixed name; if an earlier try's fate was unknown and it did land
    (AlreadyExists on a retry), read it back instead of failing."""
    attempts = 0

    async def attempt() -> dict[str, Any]:
        nonlocal attempts
        attempts += 1
        try:
            return await create()
        except AlreadyExists:
            if attempts == 1:
                raise
            return await read()

    return await retry(attempt, budget=budget, what=what)
