"""A GitLab that accepts a call and never answers costs one bounded timeout, not the job (issues 10, 17)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cli.execution import Cluster

from .fake_gitlab import FakeGitLab, Fault
from .runner_process import finished, script_job, started_runner, until
from .test_gitlab_faults import TICKS, assert_whole

FAST = "  gitlab_call_timeout = 1\n"


async def test_a_patch_that_never_answers_is_retried_on_a_new_connection(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    gitlab.trace_interval = 0.3
    job = gitlab.enqueue(script_job(TICKS))
    never = asyncio.Event()
    silent = gitlab.inject(Fault("PATCH", "/trace", hold=never, times=1))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path, extra=FAST)
    try:
        await asyncio.wait_for(silent.arrived.wait(), timeout=60)
        await finished(job, runner, within=60)
    finally:
        never.set()
        assert await runner.stop() == 0
    assert "sending the trace: no reply within 1 s; retrying" in runner.log()
    assert any(status == 416 for _, status in job.patches)  # the retry found the bytes already there
    assert_whole(job)


async def test_a_final_update_that_never_answers_is_sent_again(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    job = gitlab.enqueue(script_job("echo done"))
    never = asyncio.Event()
    silent = gitlab.inject(Fault("PUT", f"/jobs/{job.id}", hold=never, times=1))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path, extra=FAST)
    try:
        await finished(job, runner, within=60)
    finally:
        never.set()
        assert await runner.stop() == 0
    assert silent.times == 0
    assert "updating the job: no reply within 1 s; retrying" in runner.log()
    assert job.state == "success" and job.checksum_ok
    assert job.text.endswith(b"Job succeeded\x1b[0;m\n")


async def test_the_final_update_gives_up_after_final_update_timeout_and_frees_the_slot(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    stuck = gitlab.enqueue(script_job("echo first"))
    never = asyncio.Event()
    gitlab.inject(Fault("PUT", f"/jobs/{stuck.id}", hold=never, times=1000))
    runner = await started_runner(
        gitlab, gitlab_cluster, tmp_path, concurrent=1, extra=FAST + "  final_update_timeout = 3\n"
    )
    try:
        await until(
            lambda: (
                f"job {stuck.id}: GitLab did not take the final update within 3 s; giving up" in runner.log()
            ),
            within=60,
            what="the runner to give up",
        )
        later = gitlab.enqueue(script_job("echo second"))
        await finished(later, runner, within=60)
    finally:
        never.set()
        assert await runner.stop() == 0
    assert stuck.state == "running" and b"\nfirst\n" in stuck.text
    assert later.state == "success"
