"""GitLab-side faults while the trace streams: nothing lost, nothing repeated (issue 7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cli.execution import Cluster

from kuberunner.faultproxy import FaultProxy

from .fake_gitlab import FakeGitLab, FakeJob, Fault
from .runner_process import RunnerProcess, finished, script_job, started_runner, until, write_config

TICKS = "for i in 1 2 3 4 5 6 7 8; do echo line $i; sleep 0.25; done"
EXPECTED = b"".join(b"line %d\n" % i for i in range(1, 9))


def assert_whole(job: FakeJob) -> None:
    assert job.state == "success", job.text
    assert job.text.count(EXPECTED) == 1, job.text
    assert job.checksum_ok  # the runner's CRC and size match exactly what the server received


async def test_416_rewinds_to_the_servers_range(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    gitlab.trace_interval = 0.3
    job = gitlab.enqueue(script_job(TICKS))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await until(lambda: b"line 3\n" in job.text, what="line 3")
        # The server lost the tail it had acknowledged: the next PATCH gets 416 with a smaller Range.
        kept = job.text.index(b"line 2\n")
        del job.trace[kept:]
        del job.received[kept:]
        await finished(job, runner)
    finally:
        assert await runner.stop() == 0
    assert any(status == 416 for _, status in job.patches)
    assert_whole(job)


async def test_5xx_and_429_with_retry_after_are_retried(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    gitlab.trace_interval = 0.3
    job = gitlab.enqueue(script_job(TICKS))
    gitlab.inject(Fault("PATCH", "/trace", 503, times=2))
    limited = gitlab.inject(Fault("PATCH", "/trace", 429, {"Retry-After": "1"}, times=1))
    gitlab.inject(Fault("PUT", f"/jobs/{job.id}", 502, times=1))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await finished(job, runner)
    finally:
        assert await runner.stop() == 0
    assert limited.times == 0
    assert_whole(job)
    patches = [(at, status) for at, method, path, status in gitlab.requests if method == "PATCH"]
    after_429 = next(i for i, (_, status) in enumerate(patches) if status == 429)
    assert patches[after_429 + 1][0] - patches[after_429][0] >= 1.0


async def test_connection_reset_during_patch(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    gitlab.trace_interval = 0.3
    job = gitlab.enqueue(script_job(TICKS))
    host, port = gitlab.base_url.removeprefix("http://").rsplit(":", 1)  # TEST_HOST_ADDRESS on the real tier
    async with FaultProxy(target_host=host, target_port=int(port)) as proxy:
        registered = gitlab.add_runner()
        config = write_config(tmp_path / "config.toml", url=f"http://{proxy.address}", token=registered.token)
        hold = asyncio.Event()
        fault = gitlab.inject(Fault("PATCH", "/trace", hold=hold, times=1))
        runner = RunnerProcess(gitlab_cluster, config)
        try:
            await asyncio.wait_for(fault.arrived.wait(), timeout=60)
            # The server appended the bytes; the reply never arrives.
            assert proxy.reset_all() >= 1
            hold.set()
            await finished(job, runner)
        finally:
            hold.set()
            assert await runner.stop() == 0
    assert any(status == 416 for _, status in job.patches)  # the resent chunk was already there
    assert_whole(job)
