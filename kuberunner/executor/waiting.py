"""Waiting for the first of several things, without leaking the helper tasks it needs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence


async def first_of(awaitables: Sequence[Awaitable[object]], *, within: float) -> set[asyncio.Future[object]]:
    """The futures among `awaitables` that are done when the first one is, or when `within` runs out.

    Futures passed in are returned as themselves, so `future in done` works; tasks made here for
    plain awaitables are cancelled before returning.
    """
    futures: list[asyncio.Future[object]] = [asyncio.ensure_future(a) for a in awaitables]
    made = [f for f, a in zip(futures, awaitables, strict=True) if f is not a]
    try:
        done, _ = await asyncio.wait(
            set(futures), timeout=max(0.0, within), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in made:
            task.cancel()
    return done
