"""How jobs end, as GitLab is told: state, failure_reason, exit_code and checksum (issue 7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cli.cluster_objects import job_objects
from cli.execution import BIN, Cluster
from real.cluster import REAL_KUBECONFIG

from .fake_gitlab import FakeGitLab
from .runner_process import finished, script_job, started_runner, until


def pods_of(cluster: Cluster, job_id: int) -> list[str]:
    return job_objects(cluster, job_id, "pods")


# The job timeout counts from the job's start, pod creation included, and a job that times out
# before its pod runs gets no after_script. Four pods starting at once on a real node can take
# several seconds, so the timeout there leaves room for the script to be running when it fires.
TIMEOUT = 15 if REAL_KUBECONFIG else 3


async def test_success_exit_3_timeout_and_deleted_pod(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    ok = gitlab.enqueue(script_job("echo fine"))
    exit3 = gitlab.enqueue(script_job("echo failing", "exit 3", after=("echo after the failure",)))
    slow = gitlab.enqueue(script_job("sleep 4321", after=("echo after the timeout",), timeout=TIMEOUT))
    doomed = gitlab.enqueue(script_job("echo started", "sleep 4322"))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path, concurrent=4)
    try:
        await until(lambda: b"started\n" in doomed.text, what="the doomed job to start")
        pods = pods_of(gitlab_cluster, doomed.id)
        assert len(pods) == 1
        deleted = await asyncio.create_subprocess_exec(
            str(BIN.parent / "kubectl"),
            "--kubeconfig",
            str(gitlab_cluster.kubeconfig),
            "delete",
            pods[0],
            "--wait=false",
            stdout=asyncio.subprocess.DEVNULL,
        )
        assert await deleted.wait() == 0
        for job in (ok, exit3, slow, doomed):
            await finished(job, runner)
    finally:
        assert await runner.stop() == 0
    assert (ok.state, ok.failure_reason, ok.exit_code) == ("success", None, None)
    assert ok.text.endswith(b"\x1b[32;1mJob succeeded\x1b[0;m\n")

    assert (exit3.state, exit3.failure_reason, exit3.exit_code) == ("failed", "script_failure", 3)
    assert b"after the failure\n" in exit3.text
    assert exit3.text.endswith(b"\x1b[31;1mERROR: Job failed: exit code 3\x1b[0;m\n")

    assert (slow.state, slow.failure_reason) == ("failed", "job_execution_timeout")
    assert b"after the timeout\n" in slow.text
    assert slow.text.endswith(f"ERROR: Job failed: execution took longer than {TIMEOUT}s\x1b[0;m\n".encode())

    assert (doomed.state, doomed.failure_reason) == ("failed", "runner_system_failure")
    assert b"ERROR: Job failed (system failure)" in doomed.text

    for job in (ok, exit3, slow, doomed):
        assert job.checksum_ok, job.id
        assert pods_of(gitlab_cluster, job.id) == []
    await asyncio.sleep(0)
