"""Watch fan-out: a bounded history ring for watch-from-resourceVersion, and per-watcher queues.

The store publishes one `WatchEvent` per change. A `Subscription` filters by resource, namespace
and selectors, and turns a change that crosses its selector boundary into ADDED or DELETED, as the
API server's cacher does. Every buffer is bounded: the history keeps the last `history_size`
events (an older resourceVersion is answered with 410 Expired), and a watcher that falls
`max_queued` events behind is closed, so its client re-lists instead of the server growing.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    resource: str
    namespace: str
    rv: int
    object: dict[str, Any]
    old: dict[str, Any] | None = None
    """The object before the change (MODIFIED only): selectors need both sides."""


class Expired(Exception):
    """The requested resourceVersion is older than the history ring holds."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class Subscription:
    """One watcher's view of the event stream. `next()` returns None once the watch is over."""

    def __init__(
        self,
        *,
        resource: str,
        namespace: str | None,
        matches: Callable[[dict[str, Any]], bool],
        max_queued: int,
    ) -> None:
        self.resource = resource
        self.namespace = namespace
        self._matches = matches
        self._max_queued = max_queued
        self._pending: collections.deque[WatchEvent] = collections.deque()
        self._wake = asyncio.Event()
        self.closed = False
        self.overflowed = False

    def translate(self, event: WatchEvent) -> WatchEvent | None:
        """The event as this watcher sees it, or None when it is not for this watcher."""
        if event.resource != self.resource:
            return None
        if self.namespace is not None and event.namespace != self.namespace:
            return None
        now = self._matches(event.object)
        if event.type != "MODIFIED":
            return event if now else None
        before = event.old is not None and self._matches(event.old)
        if now and before:
            return event
        if now:
            return dataclasses.replace(event, type="ADDED")
        if before:
            return dataclasses.replace(event, type="DELETED")
        return None

    def offer(self, event: WatchEvent, *, bounded: bool = True) -> None:
        if self.closed:
            return
        seen = self.translate(event)
        if seen is None:
            return
        if bounded and len(self._pending) >= self._max_queued:
            # A watcher this far behind is dropped, as the cacher does; its client re-watches.
            self.overflowed = True
            self.close()
            return
        self._pending.append(seen)
        self._wake.set()

    @property
    def queued(self) -> int:
        """Events waiting to be read."""
        return len(self._pending)

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next(self) -> WatchEvent | None:
        while not self._pending:
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        if self.overflowed:
            return None
        return self._pending.popleft()


class WatchHub:
    def __init__(self, *, history_size: int = 1024, max_queued: int = 2048) -> None:
        self._history: collections.deque[WatchEvent] = collections.deque(maxlen=history_size)
        self._compacted_rv = 0
        """The newest resourceVersion that fell out of the ring; a watch from below it is expired."""
        self._max_queued = max_queued
        self._subscribers: set[Subscription] = set()

    def publish(self, event: WatchEvent) -> None:
        if self._history.maxlen is not None and len(self._history) == self._history.maxlen:
            self._compacted_rv = self._history[0].rv
        self._history.append(event)
        for sub in list(self._subscribers):
            sub.offer(event)
            if sub.closed:
                self._subscribers.discard(sub)

    def subscribe(
        self,
        *,
        resource: str,
        namespace: str | None,
        matches: Callable[[dict[str, Any]], bool],
        since_rv: int,
    ) -> Subscription:
        """Watch changes newer than `since_rv`, replaying the ones still in the ring."""
        if since_rv < self._compacted_rv:
            raise Expired(since_rv, self._compacted_rv + 1)
        sub = Subscription(
            resource=resource, namespace=namespace, matches=matches, max_queued=self._max_queued
        )
        for event in self._history:
            if event.rv > since_rv:
                sub.offer(event, bounded=False)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        self._subscribers.discard(sub)

    def close_all(self) -> None:
        for sub in list(self._subscribers):
            sub.close()
        self._subscribers.clear()

    @property
    def watcher_count(self) -> int:
        return len(self._subscribers)
