"""Cancel from GitLab: `canceling` runs after_script and reports; `canceled` aborts (issue 7)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from cli.execution import Cluster

from .fake_gitlab import FakeGitLab
from .runner_process import finished, script_job, started_runner, until
from .test_job_endings import pods_of

TICKING = "sleep {tag} & while :; do echo tick; sleep 0.2; done"


def processes(tag: int) -> list[str]:
    return subprocess.run(["pgrep", "-f", f"sleep {tag}"], capture_output=True, text=True).stdout.split()


async def test_canceling_stops_the_stage_runs_after_script_and_reports(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    gitlab.trace_interval = 0.3
    job = gitlab.enqueue(script_job(TICKING.format(tag=4340), after=("echo after cancel",)))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await until(lambda: b"tick\n" in job.text, what="the job to tick")
        assert job.graceful
        gitlab.cancel(job)
        assert job.state == "canceling"
        await finished(job, runner)
    finally:
        assert await runner.stop() == 0
    assert job.state == "canceled"
    assert job.failure_reason == "unknown_failure"  # GitLab Runner's job_canceled, unknown to the server
    assert b"after cancel\n" in job.text
    assert job.text.endswith(b"\x1b[31;1mERROR: Job failed: canceled\x1b[0;m\n")
    assert processes(4340) == []
    assert pods_of(gitlab_cluster, job.id) == []


async def test_canceled_aborts_without_after_script_and_the_runner_goes_on(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    gitlab.trace_interval = 0.3
    job = gitlab.enqueue(script_job(TICKING.format(tag=4341), after=("echo after abort",)))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await until(lambda: b"tick\n" in job.text, what="the job to tick")
        gitlab.force_cancel(job)
        await until(
            lambda: pods_of(gitlab_cluster, job.id) == [] and processes(4341) == [],
            what="the pod and its processes to go",
        )
        later = gitlab.enqueue(script_job("echo next job"))
        await finished(later, runner)
        assert later.state == "success"
    finally:
        assert await runner.stop() == 0
    assert job.state == "canceled"
    assert b"after abort" not in job.text
    assert all(update.get("state") == "running" for update in job.updates)
    await asyncio.sleep(0)


async def test_after_script_runs_to_its_end_after_canceling(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    gitlab.trace_interval = 0.3
    after = tuple(f"echo after {n}; sleep 0.5" for n in range(1, 6))
    job = gitlab.enqueue(script_job(TICKING.format(tag=4342), after=after))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await until(lambda: b"tick\n" in job.text, what="the job to tick")
        gitlab.cancel(job)
        await finished(job, runner)
    finally:
        assert await runner.stop() == 0
    assert (job.state, job.failure_reason) == ("canceled", "unknown_failure")
    text = job.text
    assert all(b"\nafter %d\n" % n in text for n in range(1, 6)), text[-1500:]
    assert text.index(b"\nafter 5\n") < text.index(b"ERROR: Job failed: canceled")
