"""When to try a dropped connection again, and when to give up: decisions only, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Exponential delays from `first` up to `cap`; `healthy()` starts over after a good stream.

    `budget` bounds how long the API may stay unreachable in one stretch before the job becomes a
    system failure.
    """

    first: float = 0.2
    cap: float = 2.0
    budget: float = 60.0
    _failures: int = field(default=0, init=False)
    _failing_since: float | None = field(default=None, init=False)

    def failed(self, now: float) -> float | None:
        """A try failed at `now`: the delay before the next one, or None when the budget is spent."""
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since >= self.budget:
            return None
        delay: float = min(self.cap, self.first * 2.0 ** min(self._failures, 30))
        self._failures += 1
        return delay

    def healthy(self) -> None:
        self._failures = 0
        self._failing_since = None
