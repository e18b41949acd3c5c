"""Many stages in one pod: every start line starts its stage, every marker ends it, in order.

A job's pod runs get_sources, the cache and artifact stages, step_script and after_script one after
the other through the same PID 1 and log reader. Here a pod is given far more stage starts than a job
has (the runner's own strategy, as `kuberunner exec` picks it, is asked to run step_script 30 times),
which is what once hung on the real cluster: a second run of a stage reused the first run's start
guard, so PID 1 ignored it and the runner waited for a marker that never came. The same pod also
shows the log reader keeping up with stage after stage (busybox `tail -f` made each last a second).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Literal

from kuberunner.executor import job as job_flow
from kuberunner.executor.job import JobRequest, base_variables, run_job
from kuberunner.executor.results import JobResult, ScriptFailure
from kuberunner.executor.strategy import Exited, JobContext, StageEnd, Strategy
from kuberunner.job.spec import JobSpec
from kuberunner.kube import config as kube_config
from kuberunner.kube.client import KubeClient
from kuberunner.local import executor_settings
from kuberunner.trace import Trace

from .execution import (
    Cluster,
    Target,
    pipeline,
    run_exec,
    section_end,
    section_start,
    unstamped,
    without_sections,
)

RUNS = 30
PROJECT = "/builds/many-stages"
COUNT = 'n=$(($(cat .runs 2>/dev/null || echo 0) + 1)) && echo "$n" > .runs'
SCRIPT = (COUNT, 'echo "run $n of the stage"', f'[ "$n" -lt {RUNS} ] || exit 7')
STEP_SCRIPT = 'Executing "step_script" stage of the job script'


class Collected:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass


class StepScriptAgain:
    """The strategy `run_job` picked, with step_script run until it fails or `runs` times."""

    def __init__(self, inner: Strategy, runs: int) -> None:
        self.name = inner.name
        self._inner = inner
        self._runs = runs

    async def open(self, job: JobContext) -> None:
        await self._inner.open(job)

    async def close(self) -> None:
        await self._inner.close()

    async def run_stage(self, job: JobContext, stage: str, *, deadline: float) -> StageEnd:
        end = await self._inner.run_stage(job, stage, deadline=deadline)
        for _ in range(self._runs - 1 if stage == "step_script" else 0):
            if end != Exited(0):
                break
            end = await self._inner.run_stage(job, stage, deadline=deadline)
        return end


def echo(command: str) -> bytes:
    return b"\x1b[32;1m$ " + command.encode() + b"\x1b[0;m\n"


async def run_many(target: Target) -> tuple[JobResult, bytes]:
    spec = JobSpec(name="many", script=SCRIPT, after_script=('echo "after $(cat .runs) runs"',))
    request = JobRequest(
        job=spec,
        job_id="1",
        variables=(*base_variables(project_dir=PROJECT), ("CI_JOB_NAME", spec.name)),
        project_dir=PROJECT,
        project_archive=None,
        timeout=120,
    )
    transport: Literal["file", "kubelet"] = "kubelet" if target.transport == "kubelet" else "file"
    settings = dataclasses.replace(executor_settings(None, "default"), log_transport=transport)
    sink = Collected()
    trace = Trace(color=False)
    trace.add_sink(sink)
    cfg = await kube_config.load_kubeconfig(target.cluster.kubeconfig, None)
    async with await KubeClient.open(cfg) as client:
        result = await run_job(
            request=request,
            client=client,
            settings=settings,
            trace=trace,
            cancel=asyncio.Event(),
            strategy=StepScriptAgain(job_flow.choose_strategy(request), RUNS),
        )
    trace.close()
    return result, bytes(sink.data)


def test_thirty_runs_of_a_stage_in_one_pod_each_start_and_end_in_order(target: Target) -> None:
    result, trace = asyncio.run(run_many(target))
    assert result == ScriptFailure(exit_code=7), trace.decode(errors="replace")[-3000:]
    runs = b"".join(
        echo(SCRIPT[0]) + echo(SCRIPT[1]) + f"run {n} of the stage\n".encode() + echo(SCRIPT[2])
        for n in range(1, RUNS + 1)
    )
    after = 'echo "after $(cat .runs) runs"'
    tail = (
        section_start("get_sources", "Preparing the project directory")
        + section_end("get_sources")
        + section_start("step_script", STEP_SCRIPT)
        + runs
        + section_end("step_script")
        + section_start("after_script", "Running after_script")
        + echo(after)
        + f"after {RUNS} runs\n".encode()
        + section_end("after_script")
    )
    lines = unstamped(trace)
    assert lines.endswith(tail), lines.decode(errors="replace")[-3000:]
    # Nothing of the job before get_sources: only the runner's own lines.
    head = lines[: len(lines) - len(tail)]
    assert re.fullmatch(rb"(?:[^\n\x1b]*\n)*", head), head


def test_the_file_transport_without_pods_exec_fails_before_any_stage_starts(
    cluster_without_exec: Cluster, tmp_path: Path
) -> None:
    """The log reader's own exec is the check that pods/exec is allowed: refused, the job is a system
    failure naming the way out, and no stage ever ran (a stage started blind would run unseen)."""
    done = run_exec(cluster_without_exec, tmp_path, pipeline(script=["echo never-shown"]))
    assert done.status == 3, done.trace[-2000:]  # a system failure
    trace = without_sections(done.trace)
    assert b"never-shown" not in trace
    assert b"get_sources" not in done.trace
    line = trace.splitlines()[-1].decode()
    assert line.startswith(
        "ERROR: Job failed (system failure): reading the job log needs pods/exec, which the cluster forbids ("
    ), line
    assert line.endswith('); set log_transport = "kubelet" in [runners.kubernetes]'), line
