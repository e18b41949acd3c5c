"""A `kuberunner run` killed with SIGKILL and started again takes its running jobs over (issue 12)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import stat
import zlib
from pathlib import Path

import pytest
from cli.cluster_objects import job_objects, kubectl
from cli.execution import Cluster

from kuberunner.gitlab.trace_upload import Chunk, TraceBuffer

from .fake_gitlab import FakeGitLab, FakeJob, Fault
from .restartable import Restartable, down_for_a_while
from .runner_process import RunnerProcess, finished, script_job, until, write_config

COUNT = 100
NUMBERED = f'for i in $(seq 1 {COUNT}); do echo "line $i"; sleep 0.1; done'


async def down_once_after(runner: Restartable, job: FakeJob, needle: bytes, *, down: float) -> None:
    """Once GitLab's trace holds `needle`, the runner is killed, left down `down` s and started
    again; returns when the job has finished (the runner is stopped either way)."""
    try:
        await until(lambda: needle in job.text, what=f"{needle!r} in GitLab's trace", within=60)
        await down_for_a_while(runner, down)
        runner.start()
        await finished(job, runner.process, within=60)
    finally:
        await runner.process.stop()


def numbered_lines(trace: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb"^line ([0-9]+)$", trace, flags=re.MULTILINE)]


@pytest.mark.parametrize("transport", ["file", "kubelet"])
async def test_a_restarted_runner_takes_over_a_running_job_with_an_exact_trace(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path, transport: str
) -> None:
    job = gitlab.enqueue(script_job(NUMBERED))
    runner = Restartable(gitlab, gitlab_cluster, tmp_path, transport)
    try:
        await until(lambda: b"line 30\n" in job.text, what="line 30 in GitLab's trace", within=60)
        records = runner.record_files()
        record = runner.records / f"job-{job.id}.json"
        assert stat.S_IMODE(record.stat().st_mode) == 0o600
        assert stat.S_IMODE(runner.records.stat().st_mode) == 0o700
        assert json.loads(record.read_text())["pod"]
        assert runner.token not in record.read_text()
        runner.kill()
        await asyncio.sleep(3)  # the job goes on while no runner watches it
        runner.start()
        await finished(job, runner.process, within=60)
    finally:
        await runner.process.stop()
    assert f"job-{job.id}.json" in records
    assert numbered_lines(job.text) == list(range(1, COUNT + 1)), runner.log()[-3000:]
    assert (job.state, job.exit_code) == ("success", None)
    assert job.checksum_ok
    assert job.text.count(b"Job succeeded") == 1
    assert job_objects(gitlab_cluster, job.id) == []
    assert runner.record_files() == []


def numbered(prefix: str, count: int) -> str:
    return f'for i in $(seq 1 {count}); do echo "{prefix} $i"; sleep 0.1; done'


def lines_of(prefix: bytes, trace: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb"^" + prefix + rb" ([0-9]+)$", trace, flags=re.MULTILINE)]


async def test_a_failing_job_taken_over_reports_its_exit_code_and_runs_after_script_once(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    job = gitlab.enqueue(script_job(numbered("line", 40), "exit 3", after=("echo after-script-ran",)))
    runner = Restartable(gitlab, gitlab_cluster, tmp_path)
    try:
        await until(lambda: b"line 10\n" in job.text, what="line 10 in GitLab's trace", within=60)
        await down_for_a_while(runner)
        runner.start()
        await finished(job, runner.process, within=60)
    finally:
        await runner.process.stop()
    assert lines_of(b"line", job.text) == list(range(1, 41)), runner.log()[-3000:]
    assert (job.state, job.failure_reason, job.exit_code) == ("failed", "script_failure", 3)
    assert job.text.count(b"\nafter-script-ran\n") == 1
    assert job.checksum_ok
    assert job_objects(gitlab_cluster, job.id) == []
    assert runner.record_files() == []


@pytest.mark.parametrize("transport", ["file", "kubelet"])
async def test_a_kill_during_after_script_and_a_second_kill_keep_the_trace_exact(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path, transport: str
) -> None:
    job = gitlab.enqueue(script_job(numbered("line", 30), after=(numbered("after", 60),)))
    runner = Restartable(gitlab, gitlab_cluster, tmp_path, transport)
    try:
        await until(lambda: b"line 10\n" in job.text, what="line 10 in GitLab's trace", within=60)
        await down_for_a_while(runner, 1)
        runner.start()
        await until(lambda: b"after 5\n" in job.text, what="after 5 in GitLab's trace", within=60)
        await down_for_a_while(runner, 1)
        runner.start()
        await finished(job, runner.process, within=60)
        await until(lambda: runner.record_files() == [], what="the record to be removed")
    finally:
        await runner.process.stop()
    assert lines_of(b"line", job.text) == list(range(1, 31)), runner.log()[-3000:]
    assert lines_of(b"after", job.text) == list(range(1, 61)), runner.log()[-3000:]
    assert job.state == "success"
    assert job.checksum_ok
    assert job.text.count(b"section_start:") == job.text.count(b"section_end:") == 3
    assert job_objects(gitlab_cluster, job.id) == []
    assert runner.record_files() == []


async def test_a_job_taken_over_while_gitlab_answers_503_still_ends_exactly(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    job = gitlab.enqueue(script_job(numbered("line", 40)))
    runner = Restartable(gitlab, gitlab_cluster, tmp_path)
    try:
        await until(lambda: b"line 10\n" in job.text, what="line 10 in GitLab's trace", within=60)
        await down_for_a_while(runner, 1)
        faults = [
            gitlab.inject(Fault(method, f"/jobs/{job.id}{end}", 503, times=10**6))
            for method, end in (("PUT", ""), ("PATCH", "/trace"))
        ]
        runner.start()
        await until(lambda: faults[0].arrived.is_set(), what="the restarted runner to ask GitLab", within=30)
        await asyncio.sleep(5)  # GitLab stays unavailable for 5 s (the scenario)
        for fault in faults:
            fault.times = 0
        await finished(job, runner.process, within=90)
    finally:
        await runner.process.stop()
    assert lines_of(b"line", job.text) == list(range(1, 41)), runner.log()[-3000:]
    assert job.state == "success"
    assert job.checksum_ok
    assert job_objects(gitlab_cluster, job.id) == []


async def test_a_job_that_finished_while_the_runner_was_down_is_reported_with_its_full_trace(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    job = gitlab.enqueue(script_job("echo started", "sleep 1", "echo finished"))
    runner = Restartable(gitlab, gitlab_cluster, tmp_path)
    await down_once_after(runner, job, b"started\n", down=3)
    assert job.state == "success", runner.log()[-3000:]
    assert job.text.count(b"\nstarted\n") == job.text.count(b"\nfinished\n") == 1
    assert job.checksum_ok
    assert job_objects(gitlab_cluster, job.id) == []
    assert runner.record_files() == []


async def test_a_pod_deleted_while_the_runner_was_down_is_a_system_failure(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    job = gitlab.enqueue(script_job("echo started", "sleep 4351"))
    runner = Restartable(gitlab, gitlab_cluster, tmp_path)
    try:
        await until(lambda: b"started\n" in job.text, what="the job to start", within=60)
        runner.kill()
        kubectl(gitlab_cluster, "delete", "pods", "-l", f"kuberunner.io/job={job.id}", "--wait=true")
        runner.start()
        await finished(job, runner.process, within=30)
    finally:
        await runner.process.stop()
    assert (job.state, job.failure_reason) == ("failed", "runner_system_failure"), runner.log()[-3000:]
    assert b"was deleted while no runner watched it" in job.text, (job.patches, runner.log())
    assert job.checksum_ok
    assert runner.record_files() == []


async def test_a_job_canceled_while_the_runner_was_down_runs_after_script_and_ends_canceled(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    job = gitlab.enqueue(script_job("echo started", "sleep 4352", after=("echo cleaning-up",)))
    runner = Restartable(gitlab, gitlab_cluster, tmp_path)
    try:
        await until(lambda: b"started\n" in job.text, what="the job to start", within=60)
        runner.kill()
        assert job.graceful
        gitlab.cancel(job)
        runner.start()
        await finished(job, runner.process, within=30)
    finally:
        await runner.process.stop()
    assert job.state == "canceled", runner.log()[-3000:]
    assert job.text.count(b"\ncleaning-up\n") == 1
    assert job_objects(gitlab_cluster, job.id) == []
    assert runner.record_files() == []


async def test_pods_of_this_runner_without_a_record_are_deleted_at_start(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    job = gitlab.enqueue(script_job("echo started", "sleep 4353"))
    runner = Restartable(gitlab, gitlab_cluster, tmp_path)
    try:
        await until(lambda: b"started\n" in job.text, what="the job to start", within=60)
        runner.kill()
        pods = job_objects(gitlab_cluster, job.id)
        pod = next(name for name in pods if name.startswith("pod/"))
        for path in runner.records.iterdir():
            path.unlink()
        runner.start()
        await until(
            lambda: job_objects(gitlab_cluster, job.id) == [], what="the orphan to be deleted", within=30
        )
    finally:
        await runner.process.stop()
    assert f"deleting orphaned pod default/{pod.removeprefix('pod/')}" in runner.log()


async def test_a_runner_started_while_another_drains_leaves_that_ones_jobs_alone(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    job = gitlab.enqueue(script_job("echo started", "sleep 3", "echo finished"))
    runner = Restartable(gitlab, gitlab_cluster, tmp_path)
    draining = runner.process
    try:
        await until(lambda: b"started\n" in job.text, what="the job to start", within=60)
        draining.process.send_signal(signal.SIGTERM)
        runner.logs.append(draining.log())
        draining.log_path.rename(draining.log_path.with_suffix(".draining.log"))
        draining.log_path = draining.log_path.with_suffix(".draining.log")
        runner.start()
        await until(
            lambda: "another runner process still runs it" in runner.process.log(),
            what="the new runner to skip the job",
        )
        await finished(job, runner.process, within=60)
        assert await asyncio.to_thread(draining.process.wait, 30) == 0
    finally:
        await draining.stop()
        await runner.process.stop()
    assert job.state == "success", runner.log()[-3000:]
    assert job.text.count(b"\nfinished\n") == 1
    assert "taking it over" not in runner.process.log()
    assert runner.record_files() == []


async def test_an_unusable_jobs_dir_is_one_clear_line_and_exit_code_2(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    runner = gitlab.add_runner()
    config = write_config(tmp_path / "config.toml", url=gitlab.base_url, token=runner.token)
    (tmp_path / "a-file").write_text("")
    process = RunnerProcess(gitlab_cluster, config, "--jobs-dir", str(tmp_path / "a-file" / "jobs"))
    status = await asyncio.to_thread(process.process.wait, 30)
    await process.stop()
    lines = process.log().strip().splitlines()
    assert status == 2
    assert lines == [
        f"kuberunner: error: job records directory {tmp_path / 'a-file' / 'jobs'}: Not a directory"
    ]


async def test_a_job_a_restarted_runner_cannot_carry_on_ends_as_a_system_failure(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    legacy = [{"key": "FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY", "value": "true", "public": True}]
    job = gitlab.enqueue(script_job("echo started", "sleep 4354", variables=legacy))
    runner = Restartable(gitlab, gitlab_cluster, tmp_path)
    try:
        await until(lambda: b"started\n" in job.text, what="the job to start", within=60)
        runner.kill()
        runner.start()
        await finished(job, runner.process, within=30)
        await until(lambda: runner.record_files() == [], what="the record to be removed")
    finally:
        await runner.process.stop()
    assert (job.state, job.failure_reason) == ("failed", "runner_system_failure"), runner.log()[-3000:]
    assert b"cannot take over a job run by the legacy_exec strategy" in job.text
    assert job.text.count(b"\nstarted\n") == 1
    assert job.checksum_ok
    assert job_objects(gitlab_cluster, job.id) == []


def test_a_continued_trace_skips_what_gitlab_holds_and_keeps_the_whole_checksum() -> None:
    whole = b"hello world, again"
    buffer = TraceBuffer(origin=6, crc=zlib.crc32(b"hello "))
    buffer.append(b"world")
    assert buffer.next_chunk() == Chunk(6, b"world")
    buffer.rewind(11)  # GitLab's 416: it holds "hello world" already
    assert buffer.next_chunk() is None
    buffer.append(b", again")
    assert buffer.next_chunk() == Chunk(11, b", again")
    assert (buffer.size, buffer.checksum) == (len(whole), f"crc32:{zlib.crc32(whole):08x}")
    buffer.rewind(3)  # never before the bytes this process can send
    assert buffer.next_chunk() == Chunk(6, b"world, again")


async def test_an_after_script_taken_over_keeps_what_was_left_of_its_timeout(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    # 8 s for an after_script that would take 11: whether the runner was down for 4 of them or not,
    # it is stopped at 8 s, never given 8 s more from the moment a restarted runner takes it over.
    spec = script_job("echo script-ran", after=("echo after-start", "sleep 11", "echo after-late"))
    spec["steps"][1]["timeout"] = 8
    job = gitlab.enqueue(spec)
    runner = Restartable(gitlab, gitlab_cluster, tmp_path, "file")
    await down_once_after(runner, job, b"after-start\n", down=4)
    assert job.state == "success", job.text[-2000:]
    assert b"after-late" not in job.text.replace(b"echo after-late", b""), job.text[-2000:]
    assert b"WARNING: after_script timed out" in job.text, job.text[-2000:]
