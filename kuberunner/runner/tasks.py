"""Background tasks that never die silently: each is named, and its ending is logged.

At many jobs per process, a job task that ends with an exception nobody retrieves is a job lost
without a word; the guard logs every ending, and `stop_all` names tasks that refuse to stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("kuberunner.runner")

_T = TypeVar("_T")


def start(coro: Coroutine[Any, Any, _T], *, name: str, tasks: set[asyncio.Task[Any]]) -> asyncio.Task[_T]:
    """Start `coro` as a task kept in `tasks` until it ends; its ending is logged."""
    task = asyncio.create_task(coro, name=name)
    tasks.add(task)
    task.add_done_callback(lambda t: _ended(t, tasks))
    return task


def _ended(task: asyncio.Task[Any], tasks: set[asyncio.Task[Any]]) -> None:
    tasks.discard(task)
    if task.cancelled():
        log.info("%s: stopped", task.get_name())
        return
    exc = task.exception()
    if exc is not None:
        log.error("%s: crashed: %s: %s", task.get_name(), type(exc).__name__, exc, exc_info=exc)
    else:
        log.debug("%s: done", task.get_name())


async def stop_all(tasks: set[asyncio.Task[Any]], *, within: float = 30.0) -> None:
    """Cancel the tasks and wait for them; log those still running after `within` seconds."""
    pending = set(tasks)
    for task in pending:
        task.cancel()
    if not pending:
        return
    _, stuck = await asyncio.wait(pending, timeout=within)
    for task in stuck:
        log.error("%s: did not stop within %.0f s", task.get_name(), within)
