"""`kuberunner run` takes jobs from GitLab and runs them on the cluster (issue 7)."""

from __future__ import annotations

import re
from pathlib import Path

from cli.execution import Cluster, pipeline, run_exec

from .fake_gitlab import FakeGitLab
from .runner_process import finished, script_job, started_runner

POD = re.compile(rb"kuberunner-job-[0-9a-f]{8}")


def comparable(trace: bytes) -> bytes:
    """The trace without what differs between two runs of one job: the pod's random suffix and
    the pod-start progress lines (they depend on timing)."""
    lines = POD.sub(b"POD", trace).split(b"\n")
    return b"\n".join(line for line in lines if not line.startswith(b"Waiting for pod"))


async def test_job_clones_the_right_sha_and_the_trace_is_what_exec_prints(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, repository: tuple[Path, list[str]], tmp_path: Path
) -> None:
    shas = repository[1]
    script = ["cat version.txt", "git rev-parse HEAD", 'printf "no newline"']
    job = gitlab.enqueue(script_job(*script, git_info={"sha": shas[1]}))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await finished(job, runner)
    finally:
        assert await runner.stop() == 0
    assert job.state == "success", job.text
    assert b"\nversion 2\n" in job.text
    assert b"\n" + shas[1].encode() + b"\n" in job.text
    assert job.checksum_ok
    # exec runs the same script on a directory holding the same files.
    work = tmp_path / "exec"
    work.mkdir()
    exec_script = ["cat version.txt", f"echo {shas[1]}", 'printf "no newline"']
    (work / "version.txt").write_text("version 2\n")
    done = run_exec(gitlab_cluster, work, pipeline(script=exec_script), "--color")
    expected = comparable(done.stdout).replace(f"echo {shas[1]}".encode(), b"git rev-parse HEAD")
    assert comparable(job.text) == expected
    ranges = [r for r, status in job.patches if status == 202]
    assert ranges[0].startswith("0-")
    assert job.patches and all(status == 202 for _, status in job.patches)
