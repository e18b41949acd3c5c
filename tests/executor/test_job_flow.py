"""The job flow through one fake per seam: a fake cluster client and a fake strategy, no pods.

How a job ends is decided in one place (`results.decide`); these tests drive `run_job` through
each way a stage can end and check the result, the trace lines and that the pod is always deleted.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any, cast

from kuberunner.executor.job import JobRequest, run_job
from kuberunner.executor.results import Canceled, JobResult, ScriptFailure, Success, SystemFailure, TimedOut
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.executor.strategy import Exited, JobContext, Lost, StageEnd, Stopped
from kuberunner.job.spec import JobSpec
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import NotFound
from kuberunner.trace import StreamSink, Trace


class FakeCluster:
    """The part of KubeClient the job flow uses; pods become Running at once."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.broken = asyncio.Event()

    async def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        pod = {**body, "metadata": {**body["metadata"], "uid": "uid-1"}}
        names = [c["name"] for c in body["spec"]["containers"]]
        pod["status"] = {
            "phase": "Running",
            "containerStatuses": [
                {"name": n, "state": {"running": {"startedAt": "2026-11-27T00:00:00Z"}}} for n in names
            ],
        }
        self.pods[body["metadata"]["name"]] = pod
        return pod

    async def get_pod(
        self,
        namespace: str,
        name: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the same signature as KubeClient.get_pod
    ) -> dict[str, Any]:
        if name in self.deleted:
            raise NotFound(404, "NotFound", f'pods "{name}" not found')
        return self.pods[name]

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.secrets[body["metadata"]["name"]] = body
        return body

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        return self.secrets[name]

    async def delete_pod(self, namespace: str, name: str, *, grace_seconds: int | None = None) -> None:
        self.deleted.append(name)
        self.broken.set()  # its containers stop at once: the watch ends with DELETED

    async def watch_pod(
        self, namespace: str, name: str, *, resource_version: str | None = None, bookmarks: bool = False
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        yield "ADDED", self.pods[name]
        await self.broken.wait()
        yield "DELETED", self.pods[name]

    async def watch_events(self, namespace: str, involved: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """None recorded: the pod's status alone says when it runs."""
        for _ in ():
            yield "ADDED", {}


class ScriptedStrategy:
    """Ends each stage as told; records which stages ran."""

    name = "scripted"

    def __init__(self, ends: dict[str, StageEnd], *, hang: str | None = None) -> None:
        self.ends = ends
        self.hang = hang
        self.ran: list[str] = []

    async def open(self, job: JobContext) -> None:
        return None

    async def close(self) -> None:
        return None

    async def run_stage(self, job: JobContext, stage: str, *, deadline: float) -> StageEnd:
        self.ran.append(stage)
        if stage == self.hang:
            loop = asyncio.get_running_loop()
            waiter = asyncio.ensure_future(job.cancel.wait())
            done, _ = await asyncio.wait(
                {waiter, job.broken},
                timeout=max(0.0, deadline - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
            if job.broken in done:
                return Lost(job.broken.result())
            return Stopped(canceled=job.cancel.is_set())
        return self.ends.get(stage, Exited(0))


async def run(
    strategy: ScriptedStrategy,
    *,
    cluster: FakeCluster | None = None,
    job_timeout: float = 30,
    cancel: asyncio.Event | None = None,
) -> tuple[JobResult, bytes, FakeCluster]:
    cluster = cluster or FakeCluster()
    out = io.BytesIO()
    trace = Trace()
    trace.add_sink(StreamSink(out))
    spec = JobSpec(name="job", script=("true",), after_script=("echo after",))
    request = JobRequest(
        job=spec, job_id="7", variables=(), project_dir="/builds/p", project_archive=b"", timeout=job_timeout
    )
    result = await run_job(
        request=request,
        client=cast(KubeClient, cluster),
        settings=ExecutorSettings(),
        trace=trace,
        cancel=cancel or asyncio.Event(),
        strategy=strategy,
    )
    return result, out.getvalue(), cluster


async def test_every_stage_zero_is_success_and_after_script_runs() -> None:
    strategy = ScriptedStrategy({})
    result, trace, cluster = await run(strategy)
    assert result == Success()
    assert strategy.ran == ["get_sources", "step_script", "after_script"]
    assert b'Executing "step_script" stage of the job script\n' in trace
    assert cluster.deleted == list(cluster.pods)


async def test_a_non_zero_marker_is_a_script_failure_and_stops_the_user_stages() -> None:
    strategy = ScriptedStrategy({"get_sources": Exited(2)})
    result, _, cluster = await run(strategy)
    assert result == ScriptFailure(2)
    # after_script's variant whose CI_JOB_STATUS says `failed` (issue 13)
    assert strategy.ran == ["get_sources", "after_script_failed"]
    assert cluster.deleted


async def test_a_lost_stage_is_a_system_failure_without_after_script() -> None:
    strategy = ScriptedStrategy({"step_script": Lost("connection lost")})
    result, _, cluster = await run(strategy)
    assert result == SystemFailure("connection lost")
    assert strategy.ran == ["get_sources", "step_script"]
    assert cluster.deleted


async def test_a_failing_after_script_does_not_change_the_result() -> None:
    result, trace, _ = await run(ScriptedStrategy({"after_script": Exited(9)}))
    assert result == Success()
    assert b"WARNING: after_script failed with exit code 9\n" in trace


async def test_timeout_then_after_script() -> None:
    strategy = ScriptedStrategy({}, hang="step_script")
    result, trace, _ = await run(strategy, job_timeout=0.2)
    assert result == TimedOut(0.2)
    assert strategy.ran == ["get_sources", "step_script", "after_script_failed"]
    assert b"Job timed out: the running stage was stopped\n" in trace


async def test_cancel_then_after_script() -> None:
    cancel = asyncio.Event()
    strategy = ScriptedStrategy({}, hang="step_script")
    asyncio.get_running_loop().call_later(0.1, cancel.set)
    result, _, _ = await run(strategy, cancel=cancel)
    assert result == Canceled()
    assert strategy.ran[-1] == "after_script_canceled"


async def test_a_pod_deleted_under_a_stage_is_a_system_failure_naming_it() -> None:
    cluster = FakeCluster()
    strategy = ScriptedStrategy({}, hang="step_script")
    asyncio.get_running_loop().call_later(0.1, cluster.broken.set)
    result, _, _ = await run(strategy, cluster=cluster)
    assert isinstance(result, SystemFailure) and "was deleted" in result.reason


class CancelAwareStrategy(ScriptedStrategy):
    """step_script waits for the cancel; after_script ends Stopped if a cancel is visible to it, as
    the real strategies' stages do, and can be made to hang until the job is dropped."""

    def __init__(self, *, after_script_hangs: bool = False) -> None:
        super().__init__({}, hang="step_script")
        self.after_script_hangs = after_script_hangs
        self.in_after_script = asyncio.Event()
        self.after_script_ends: list[StageEnd] = []

    async def run_stage(self, job: JobContext, stage: str, *, deadline: float) -> StageEnd:
        if not stage.startswith("after_script"):
            return await super().run_stage(job, stage, deadline=deadline)
        self.ran.append(stage)
        self.in_after_script.set()
        if self.after_script_hangs:
            await asyncio.Event().wait()
        end: StageEnd = Stopped(canceled=True) if job.cancel.is_set() else Exited(0)
        self.after_script_ends.append(end)
        return end


async def test_a_cancel_does_not_stop_after_script() -> None:
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, cancel.set)
    strategy = CancelAwareStrategy()
    result, _, _ = await run(strategy, cancel=cancel)
    assert result == Canceled()
    assert strategy.after_script_ends == [Exited(0)]


class SlowDeleteCluster(FakeCluster):
    async def delete_pod(self, namespace: str, name: str, *, grace_seconds: int | None = None) -> None:
        await asyncio.sleep(0.05)
        await super().delete_pod(namespace, name, grace_seconds=grace_seconds)


async def test_a_dropped_job_still_deletes_its_pod_even_if_dropped_again_meanwhile() -> None:
    cancel = asyncio.Event()
    cluster = SlowDeleteCluster()
    strategy = CancelAwareStrategy(after_script_hangs=True)
    job = asyncio.ensure_future(run(strategy, cluster=cluster, cancel=cancel))
    asyncio.get_running_loop().call_later(0.05, cancel.set)
    await asyncio.wait_for(strategy.in_after_script.wait(), 10)
    job.cancel()
    await asyncio.sleep(0)  # run_job is now in its clean-up, deleting the pod
    job.cancel()
    await asyncio.wait({job}, timeout=10)
    assert job.cancelled()
    assert cluster.deleted == list(cluster.pods)


async def test_a_cancel_before_the_pod_exists_creates_none() -> None:
    cancel = asyncio.Event()
    cancel.set()
    result, trace, cluster = await run(ScriptedStrategy({}), cancel=cancel)
    assert result == Canceled()
    assert cluster.pods == {}
    assert b"Job canceled before its pod was created\n" in trace
