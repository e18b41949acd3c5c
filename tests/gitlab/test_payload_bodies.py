"""Job payloads are read whole, up to a limit; a payload that cannot be used still gets its final update
(issue 10)."""

from __future__ import annotations

import json
from pathlib import Path

from cli.execution import Cluster

from kuberunner.gitlab.client import GitLabClient

from .fake_gitlab import FakeGitLab, FakeJob
from .runner_process import finished, script_job, started_runner

BIG = {"key": "BIG", "value": "x" * 2000, "public": True, "masked": False}


async def test_a_payload_arriving_in_two_chunks_is_read_whole_and_the_job_runs(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    job = gitlab.enqueue(script_job('echo "BIG has ${#BIG} bytes"', variables=[BIG], _two_chunks=True))
    assert len(json.dumps(gitlab._payload(job))) > 2300
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await finished(job, runner, within=60)
    finally:
        assert await runner.stop() == 0
    assert job.state == "success", runner.log()[-2000:]
    assert b"\nBIG has 2000 bytes\n" in job.text


def truncated(job: FakeJob) -> bytes:
    return b'{"id": %d, "token": "%s", "job_info": {"name": "cut"}, "steps": [{"name": "scr' % (
        job.id,
        job.token.encode(),
    )


async def test_a_payload_that_is_not_json_still_gets_a_failed_final_update(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    bad = gitlab.enqueue({"_raw_body": truncated})
    good = gitlab.enqueue(script_job("echo next"))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await finished(bad, runner, within=60)
        await finished(good, runner, within=60)
    finally:
        assert await runner.stop() == 0
    assert (bad.state, bad.failure_reason) == ("failed", "runner_system_failure")
    assert b"ERROR: Job failed (system failure): the job payload is not valid JSON" in bad.text
    assert good.state == "success"
    assert "Traceback" not in runner.log()


async def test_a_payload_over_the_limit_is_refused_not_cut_and_its_job_is_named(gitlab: FakeGitLab) -> None:
    runner = gitlab.add_runner()
    job = gitlab.enqueue(script_job("true", variables=[BIG]))
    async with GitLabClient(gitlab.base_url, max_job_body=1000) as api:
        offer = await api.request_job(token=runner.token, system_id="s_test", last_update=None)
    assert offer.job is None and offer.broken is not None
    assert offer.broken.reason == "the job payload is larger than 1000 bytes"
    assert (offer.broken.id, offer.broken.token) == (job.id, job.token)
