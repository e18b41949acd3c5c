"""What the executor tells whoever watches it (the runner's metrics), through one passed-in object.

The base hears nothing, so `exec`, tests and benchmarks need not care; `kuberunner run` passes one
that counts (`runner.metrics`). Calls are cheap and never raise.
"""

from __future__ import annotations


class ExecutorObserver:
    def stream_reconnected(self, stream: str) -> None:
        """A stream to the pod (`log`, `pods/log`, `stdin`) dropped and is being opened again."""

    def stage_started(self, stage: str, seconds: float) -> None:
        """A stage's start line reached the pod's PID 1, `seconds` after the stage was asked for."""


NO_OBSERVER = ExecutorObserver()
