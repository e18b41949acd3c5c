"""SIGTERM: take no new jobs and finish the running ones; a second signal stops them now (issue 7)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from cli.execution import Cluster

from .fake_gitlab import FakeGitLab
from .runner_process import finished, script_job, started_runner, until
from .test_cancel import processes
from .test_job_endings import pods_of


async def test_first_sigterm_finishes_running_jobs_and_takes_no_new_ones(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    running = gitlab.enqueue(script_job("echo started", "sleep 2", "echo finished"))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path, concurrent=1)
    try:
        await until(lambda: b"started\n" in running.text, what="the job to start")
        waiting = gitlab.enqueue(script_job("echo never"))
        runner.process.send_signal(signal.SIGTERM)
        await finished(running, runner)
        assert await asyncio.to_thread(runner.process.wait, 30) == 0
    finally:
        await runner.stop()
    assert running.state == "success"
    assert running.text.count(b"\nfinished\n") == 1
    assert waiting.state == "pending"


async def test_second_signal_stops_jobs_now_and_deletes_their_pods(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    job = gitlab.enqueue(script_job("echo started", "sleep 4350", after=("echo after",)))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await until(lambda: b"started\n" in job.text, what="the job to start")
        runner.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)  # a signal, not synchronisation: two signals must stay two
        assert runner.process.poll() is None
        runner.process.send_signal(signal.SIGQUIT)
        assert await asyncio.to_thread(runner.process.wait, 30) == 0
    finally:
        await runner.stop()
    assert (job.state, job.failure_reason) == ("failed", "runner_system_failure")
    assert job.text.endswith(b"ERROR: Job failed (system failure): the runner was stopped\x1b[0;m\n")
    assert b"\nafter\n" not in job.text
    assert pods_of(gitlab_cluster, job.id) == []
    assert processes(4350) == []
