"""Many jobs under `concurrent`, and masked variables in the stored trace (issue 7)."""

from __future__ import annotations

from pathlib import Path

from cli.execution import Cluster

from .fake_gitlab import FakeGitLab
from .runner_process import finished, script_job, started_runner

SECRET = "s3cr3t-0123456789abcdefghijklmnopqrstuvw"


async def test_20_jobs_with_concurrent_5(gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path) -> None:
    jobs = [gitlab.enqueue(script_job("sleep 0.5", 'echo "done $CI_JOB_ID"')) for _ in range(20)]
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path, concurrent=5)
    try:
        for job in jobs:
            await finished(job, runner, within=120)
    finally:
        assert await runner.stop() == 0
    assert gitlab.running_peak == 5
    for job in jobs:
        assert job.state == "success", job.text
        assert f"\ndone {job.id}\n".encode() in job.text
        assert job.checksum_ok


async def test_masked_value_split_across_two_patches(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    gitlab.trace_interval = 0.2
    script = [
        'echo "whole: $SECRET"',
        'printf "split: %s" "${SECRET%????????????????????}"; sleep 1.5; '
        'printf "%s\\n" "${SECRET#????????????????????}"',
        'echo "token: $CI_JOB_TOKEN"',
    ]
    variables = [{"key": "SECRET", "value": SECRET, "public": False, "masked": True}]
    job = gitlab.enqueue(script_job(*script, variables=variables))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await finished(job, runner)
    finally:
        assert await runner.stop() == 0
    assert job.state == "success", job.text
    assert b"\nwhole: [MASKED]\n" in job.text
    assert b"\nsplit: [MASKED]\n" in job.text
    assert b"\ntoken: [MASKED]\n" in job.received  # masked by the runner, not only by the server
    for text in (job.text, job.received):
        assert SECRET[:20].encode() not in text and SECRET[20:].encode() not in text
    # "split: " went out in one PATCH, the masked value in a later one.
    split_at = job.text.index(b"\nsplit: ") + len(b"\nsplit: ")
    ends = [int(r.partition("-")[2]) + 1 for r, status in job.patches if status == 202]
    assert split_at in ends, (split_at, ends)
