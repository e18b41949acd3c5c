"""`kuberunner run` takes jobs from GitLab and runs them on the cluster (issue 7)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from cli.execution import BIN, Cluster, pipeline, run_exec, section_end, section_start, unstamped

from .fake_gitlab import FakeGitLab
from .runner_process import finished, script_job, started_runner

POD = re.compile(rb"kuberunner-job-[0-9a-f]{8}")
GIT_SOURCES = "Getting source from Git repository"
STEP_SCRIPT = 'Executing "step_script" stage of the job script'


def comparable(trace: bytes) -> bytes:
    """The trace without what differs between two runs of one job: the pod's random suffix, the
    section markers' time stamps and the pod-start progress lines (they depend on timing)."""
    lines = unstamped(POD.sub(b"POD", trace)).split(b"\n")
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
    # exec runs the same script on a directory holding the same files, and its --trace-file is the
    # same GitLab-format trace; it unpacks an archive where the GitLab job clones, and its
    # get_sources section says so.
    work = tmp_path / "exec"
    work.mkdir()
    exec_script = ["cat version.txt", f"echo {shas[1]}", 'printf "no newline"']
    (work / "version.txt").write_text("version 2\n")
    done = run_exec(gitlab_cluster, work, pipeline(script=exec_script), "--color")
    expected = (
        comparable(done.trace)
        .replace(f"echo {shas[1]}".encode(), b"git rev-parse HEAD")
        .replace(b"Preparing the project directory", GIT_SOURCES.encode())
    )
    assert comparable(job.text) == expected
    assert unstamped(job.text).endswith(
        b"no newline\n" + section_end("step_script") + b"\x1b[32;1mJob succeeded\x1b[0;m\n"
    )
    ranges = [r for r, status in job.patches if status == 202]
    assert ranges[0].startswith("0-")
    assert job.patches and all(status == 202 for _, status in job.patches)


LEGACY = {
    "key": "FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY",
    "value": "true",
    "public": True,
    "masked": False,
}
VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "attach-file": ({}, ""),
    "attach-kubelet": ({}, '    log_transport = "kubelet"\n'),
    "legacy-exec": ({"variables": [LEGACY]}, ""),
}


async def job_pod(cluster: Cluster, job_id: int, *, within: float = 30) -> dict[str, Any]:
    """The job's pod as the cluster has it, as soon as it exists (without blocking the fake GitLab)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        kubectl = await asyncio.create_subprocess_exec(
            str(BIN.parent / "kubectl"),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "get",
            "pods",
            "-o",
            "json",
            "-l",
            f"kuberunner.io/job={job_id}",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await kubectl.communicate()
        assert kubectl.returncode == 0
        items: list[dict[str, Any]] = json.loads(out)["items"]
        if items:
            return items[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no pod for job {job_id}")


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_get_sources_runs_in_the_helper_container(
    variant: str,
    gitlab: FakeGitLab,
    gitlab_cluster: Cluster,
    repository: tuple[Path, list[str]],
    tmp_path: Path,
) -> None:
    extra, kubernetes = VARIANTS[variant]
    sha = repository[1][0]
    good = gitlab.enqueue(
        script_job("git log -1 --format=%H", "cat version.txt", "sleep 2", git_info={"sha": sha}, **extra)
    )
    missing = "1234567890abcdef1234567890abcdef12345678"
    bad = gitlab.enqueue(script_job("echo never", git_info={"sha": missing}, **extra))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path, kubernetes=kubernetes)
    try:
        pod = await job_pod(gitlab_cluster, good.id)
        await finished(good, runner)
        await finished(bad, runner)
    finally:
        assert await runner.stop() == 0

    containers = pod["spec"]["containers"]
    assert [c["name"] for c in containers] == ["build", "helper"]
    build, helper = containers
    # A real API server omits false booleans (omitempty): read them with their default.
    assert (helper["stdin"], helper.get("stdinOnce", False), helper.get("tty", False)) == (True, False, False)
    assert helper["command"] == build["command"] and helper["image"] == build["image"]
    assert [m["name"] for m in helper["volumeMounts"]] == ["scripts", "logs", "builds"]
    assert helper["volumeMounts"] == build["volumeMounts"]

    # The helper's clone is the build container's project directory.
    assert good.state == "success", good.text[-2000:]
    assert (
        section_start("get_sources", GIT_SOURCES)
        + section_end("get_sources")
        + section_start("step_script", STEP_SCRIPT)
        + b"\x1b[32;1m$ git log -1 --format=%H\x1b[0;m\n"
        + sha.encode()
        + b"\n\x1b[32;1m$ cat version.txt\x1b[0;m\nversion 1\n"
        in unstamped(good.text)
    )
    # What the helper prints reaches the trace, inside the get_sources section, whatever the transport.
    assert (bad.state, bad.failure_reason, bad.exit_code) == ("failed", "script_failure", 128), bad.text
    sources = unstamped(bad.text).split(section_start("get_sources", GIT_SOURCES), 1)[1]
    assert sources.startswith(
        b"fatal: reference is not a tree: " + missing.encode() + b"\n" + section_end("get_sources")
    ), sources
    assert b"never" not in bad.text
