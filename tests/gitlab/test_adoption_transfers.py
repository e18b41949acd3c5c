"""A restarted `kuberunner run` takes over jobs with cache and artifact stages (issue 12 with issue 13):
killed during the script, or in the middle of the artifacts upload, the job ends as it would have
without the restart, each stage run once, the trace exact."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cli.cluster_objects import job_objects
from cli.execution import Cluster, section_start, unstamped

from .cache_config import local_cache
from .fake_gitlab import FakeGitLab, Fault
from .restartable import Restartable, down_for_a_while
from .runner_process import finished, script_job, until

ARTIFACTS = [
    {
        "name": "out",
        "untracked": False,
        "paths": ["out/"],
        "when": "on_success",
        "artifact_type": "archive",
        "artifact_format": "zip",
        "expire_in": "1 week",
    }
]
CACHE = [
    {"key": "deps", "paths": [".deps/"], "untracked": False, "policy": "pull-push", "when": "on_success"}
]
MAKE_OUTPUT = "mkdir -p out .deps && echo built > out/app.txt && echo dep > .deps/lib.txt"


def numbered(count: int) -> str:
    return f'for i in $(seq 1 {count}); do echo "line $i"; sleep 0.1; done'


def lines(trace: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb"^line ([0-9]+)$", trace, flags=re.MULTILINE)]


def zip_names(data: bytes) -> list[str]:
    return sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())


def uploads_of(job: Any) -> list[str]:
    return [u.fields.get("artifact_type", "") for u in job.artifacts]


@pytest.mark.parametrize("transport", ["file", "kubelet"])
async def test_a_job_with_cache_and_artifacts_killed_during_its_script_is_taken_over(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path, transport: str
) -> None:
    job = gitlab.enqueue(script_job(MAKE_OUTPUT, numbered(40), artifacts=ARTIFACTS, cache=CACHE))
    runner = Restartable(gitlab, gitlab_cluster, tmp_path, transport, extra=local_cache(tmp_path / "cache"))
    try:
        await until(lambda: b"line 10\n" in job.text, what="line 10 in GitLab's trace", within=60)
        # The record names the transfer stages, never their presigned URLs (they stay in the Secret).
        record = (runner.records / f"job-{job.id}.json").read_text()
        assert "cache.zip" not in record and "/o/" not in record
        assert json.loads(record)["after_stages"] == ["archive_cache", "upload_artifacts_on_success"]
        await down_for_a_while(runner)
        runner.start()
        await finished(job, runner.process, within=90)
    finally:
        await runner.process.stop()
    text = unstamped(job.text)
    assert job.state == "success", runner.log()[-3000:] + text.decode(errors="replace")[-2000:]
    assert lines(job.text) == list(range(1, 41))
    assert uploads_of(job) == ["archive"]
    assert zip_names(job.artifact("archive").data) == ["out/app.txt"]
    assert text.count(section_start("restore_cache", "Restoring cache")) == 1
    assert text.count(section_start("archive_cache", "Saving cache for successful job")) == 1
    assert text.count(b'Uploading artifacts as "archive" to coordinator... 201 Created\n') == 1
    # The `local` cache's server lived in the runner that was killed: the URLs the pod holds point at
    # it, so saving this job's cache only warns (the cache never fails a job); S3 URLs outlive it.
    assert b"WARNING: failed to upload the cache: 000\n" in text
    assert job.checksum_ok
    assert job_objects(gitlab_cluster, job.id) == []
    assert runner.record_files() == []


@pytest.mark.parametrize("transport", ["file", "kubelet"])
async def test_a_runner_killed_during_the_artifacts_upload_takes_the_upload_over(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path, transport: str
) -> None:
    # GitLab answers the first three uploads 503: the helper retries after 1, 2 and 3 seconds, and the
    # runner is killed once the second 503 went out, the upload stage running in the pod. The script
    # runs long enough for GitLab to hold a checkpoint (a job killed in its first second has none).
    busy = gitlab.inject(Fault("POST", "/artifacts", status=503, times=3))
    job = gitlab.enqueue(script_job(MAKE_OUTPUT, numbered(20), "echo script done", artifacts=ARTIFACTS))
    runner = Restartable(gitlab, gitlab_cluster, tmp_path, transport)
    try:
        await until(lambda: busy.times <= 1, what="the second upload attempt", within=90)
        runner.kill()
        record = json.loads((runner.records / f"job-{job.id}.json").read_text())
        checkpoint_stage = record["checkpoint"]["stage"] if record["checkpoint"] else None
        runner.start()
        await finished(job, runner.process, within=90)
    finally:
        await runner.process.stop()
    text = unstamped(job.text)
    assert record["current"] == "upload_artifacts_on_success", checkpoint_stage
    assert job.state == "success", runner.log()[-3000:] + text.decode(errors="replace")[-2000:]
    assert busy.times == 0
    assert uploads_of(job) == ["archive"]
    assert zip_names(job.artifact("archive").data) == ["out/app.txt"]
    assert text.count(b"\nscript done\n") == 1 and lines(job.text) == list(range(1, 21))
    header = section_start("upload_artifacts_on_success", "Uploading artifacts for successful job")
    assert text.count(header) == 1
    upload = text.split(header)[1]
    assert upload.count(b"Uploading artifacts...\n") == 1
    assert upload.count(b"; retrying\n") == 3
    assert upload.count(b'Uploading artifacts as "archive" to coordinator... 201 Created\n') == 1
    assert job.checksum_ok
    assert job_objects(gitlab_cluster, job.id) == []
    assert runner.record_files() == []
