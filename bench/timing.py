"""Timing stages inside the real job flow: a strategy wrapper that `run_job` is made to use.

`run_job` picks its strategy through `kuberunner.executor.job.choose_strategy`; while
`timed_strategies` is active that function wraps the real strategy in `TimedStrategy`, which times
every stage and can repeat `step_script` many times in the same pod. So the benchmarks measure the
runner's own code path (pod, Secret, open, stages, cleanup), not a re-implementation of it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from common import proc_sample

from kuberunner.executor import job as job_flow
from kuberunner.executor.job import JobRequest
from kuberunner.executor.strategy import Exited, JobContext, StageEnd, Strategy


@dataclass(slots=True)
class StageTimes:
    """Monotonic clock readings of one job, filled in as it runs."""

    opened: float = 0.0
    """When `strategy.open` returned (the pod is Running, readers started)."""
    stages: list[tuple[str, float, float]] = field(default_factory=list)
    """(stage, start, end) for every stage run."""
    ends: list[StageEnd] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    """This process's CPU seconds spent during each stage run (same order as `stages`)."""
    other_pid: int | None = None
    """Another process (the cluster) whose CPU seconds per stage go into `other_cpu`."""
    other_cpu: list[float] = field(default_factory=list)

    def durations(self, stage: str) -> list[float]:
        return [end - start for name, start, end in self.stages if name == stage]

    def cpu_of(self, stage: str) -> float:
        return sum(c for (name, _, _), c in zip(self.stages, self.cpu, strict=True) if name == stage)

    def other_cpu_of(self, stage: str) -> float:
        """0.0 when no other process is read (a cluster that is not ours: `--kubeconfig`)."""
        if self.other_pid is None:
            return 0.0
        return sum(c for (name, _, _), c in zip(self.stages, self.other_cpu, strict=True) if name == stage)


class TimedStrategy:
    """Delegates to `inner`; runs `step_script` `repeat` times, timing each run."""

    def __init__(self, inner: Strategy, times: StageTimes, *, repeat: int = 1) -> None:
        self.name = inner.name
        self._inner = inner
        self._times = times
        self._repeat = repeat

    async def open(self, job: JobContext) -> None:
        await self._inner.open(job)
        self._times.opened = time.monotonic()

    async def close(self) -> None:
        await self._inner.close()

    async def run_stage(self, job: JobContext, stage: str, *, deadline: float) -> StageEnd:
        runs = self._repeat if stage == "step_script" else 1
        end: StageEnd = Exited(0)
        for _ in range(runs):
            other = self._times.other_pid
            other_before = proc_sample(other).cpu if other is not None else 0.0
            cpu_before = time.process_time()
            start = time.monotonic()
            end = await self._inner.run_stage(job, stage, deadline=deadline)
            self._times.stages.append((stage, start, time.monotonic()))
            self._times.cpu.append(time.process_time() - cpu_before)
            if other is not None:
                self._times.other_cpu.append(proc_sample(other).cpu - other_before)
            self._times.ends.append(end)
            if end != Exited(0):
                break
        return end


@contextlib.contextmanager
def timed_strategies(times_for: Callable[[JobRequest], StageTimes], *, repeat: int = 1) -> Iterator[None]:
    """While active, every `run_job` times its stages into `times_for(request)`."""
    original = job_flow.choose_strategy

    def choose(request: JobRequest) -> Strategy:
        return TimedStrategy(original(request), times_for(request), repeat=repeat)

    job_flow.choose_strategy = choose
    try:
        yield
    finally:
        job_flow.choose_strategy = original
