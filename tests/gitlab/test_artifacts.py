"""Artifacts on `kuberunner run` (issue 13): uploaded after the script by the helper, downloaded by
the jobs that depend on them, on both log transports (kubelet: on a cluster that forbids pods/exec)."""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli.execution import Cluster, section_end, section_start, start_cluster, unstamped
from real.cluster import NO_EXEC_RULES, REAL_KUBECONFIG, real_cluster, service_account_kubeconfig

from .fake_gitlab import FakeGitLab, FakeJob, Fault
from .runner_process import finished, script_job, started_runner

KUBELET = '    log_transport = "kubelet"\n'


@pytest.fixture(scope="module")
def no_exec_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("gitlab-no-exec")
    if REAL_KUBECONFIG:
        out = service_account_kubeconfig(
            Path(REAL_KUBECONFIG), "kuberunner-no-exec", NO_EXEC_RULES, root / "kubeconfig"
        )
        yield real_cluster(out, root)
        return
    yield from start_cluster(root, "--forbid", "pods/exec")


@pytest.fixture(params=["file", "kubelet"])
def transport(request: pytest.FixtureRequest) -> tuple[Cluster, str]:
    if request.param == "file":
        return request.getfixturevalue("gitlab_cluster"), ""
    return request.getfixturevalue("no_exec_cluster"), KUBELET


def archive(name: str, *paths: str, when: str = "on_success", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "untracked": False,
        "paths": list(paths),
        "when": when,
        "artifact_type": "archive",
        "artifact_format": "zip",
        "expire_in": "1 week",
        **extra,
    }


def junit(*paths: str) -> dict[str, Any]:
    return {
        "name": "junit.xml",
        "paths": list(paths),
        "when": "always",
        "artifact_type": "junit",
        "artifact_format": "gzip",
        "expire_in": "30 days",
    }


def dependency(job: FakeJob, name: str) -> dict[str, Any]:
    size = len(job.artifact("archive").data)
    return {
        "id": job.id,
        "name": name,
        "token": job.token,
        "artifacts_file": {"filename": "a.zip", "size": size},
    }


def zip_names(data: bytes) -> list[str]:
    return sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())


UPLOAD_ON_SUCCESS = "Uploading artifacts for successful job"


async def test_artifacts_go_up_and_come_down_to_the_dependent_job(
    transport: tuple[Cluster, str], gitlab: FakeGitLab, tmp_path: Path
) -> None:
    cluster, kubernetes = transport
    build = gitlab.enqueue(
        script_job(
            "mkdir -p build/sub && head -c 5242880 /dev/urandom > build/out.bin",
            "echo no > build/other.txt && echo no > build/sub/deep.log && echo no > stray.bin",
            "printf '<testsuite name=\"t\"/>\\n' > report.xml",
            name="build",
            artifacts=[
                archive("files-${CI_JOB_ID}", "build/*.bin", "build/**/*.log", exclude=["build/sub/*.log"]),
                archive("outside", "../etc/passwd", "/etc/hostname"),
                junit("report.xml"),
            ],
        )
    )
    runner = await started_runner(gitlab, cluster, tmp_path, kubernetes=kubernetes)
    try:
        await finished(build, runner, within=120)
        assert build.state == "success", build.text.decode(errors="replace")[-3000:]
        upload = build.artifact("archive")
        assert upload.fields == {"artifact_type": "archive", "artifact_format": "zip", "expire_in": "1 week"}
        assert upload.filename == f"files-{build.id}.zip"
        assert zip_names(upload.data) == ["build/out.bin"]
        out = zipfile.ZipFile(io.BytesIO(upload.data)).read("build/out.bin")
        assert len(out) == 5 * 1024 * 1024
        report = build.artifact("junit")
        assert report.fields["artifact_format"] == "gzip"
        assert gzip.decompress(report.data) == b'<testsuite name="t"/>\n'
        assert len(build.artifacts) == 2
        text = unstamped(build.text)
        assert b"WARNING: artifacts path '../etc/passwd' is not a subpath of the project directory" in text
        assert (
            section_start("upload_artifacts_on_success", UPLOAD_ON_SUCCESS)
            + b"Uploading artifacts...\n"
            + b"build/*.bin: found 1 matching artifact files and directories\n"
            + b"WARNING: build/**/*.log: no matching files. Ensure that the artifact path is relative to the"
            + b" working directory (/builds/group/project)\n"
            + b'Uploading artifacts as "archive" to coordinator... 201 Created\n'
            + b"Uploading artifacts...\n"
            + b"report.xml: found 1 matching artifact files and directories\n"
            + b'Uploading artifacts as "junit" to coordinator... 201 Created\n'
            + section_end("upload_artifacts_on_success")
        ) in text, text[-1500:]

        test = gitlab.enqueue(
            script_job(
                "sha256sum build/out.bin", "ls build", name="test", dependencies=[dependency(build, "build")]
            )
        )
        await finished(test, runner, within=120)
    finally:
        assert await runner.stop() == 0
    assert test.state == "success", test.text[-3000:]
    digest = hashlib.sha256(out).hexdigest().encode()
    text = unstamped(test.text)
    assert digest + b"  build/out.bin\n" in text
    assert b"\nout.bin\n" in text and b"other.txt" not in text.split(b"$ ls build")[1]
    assert (
        section_start("download_artifacts", "Downloading artifacts")
        + b"Downloading artifacts for build ("
        + str(build.id).encode()
        + b")...\nDownloading artifacts from coordinator... ok  id="
        + str(build.id).encode()
        + b"\n"
        + section_end("download_artifacts")
    ) in text
    assert not test.artifacts


async def test_when_on_failure_uploads_only_after_a_failure(
    gitlab_cluster: Cluster, gitlab: FakeGitLab, tmp_path: Path
) -> None:
    artifacts = [archive("logs", "log.txt", when="on_failure")]
    # The upload's credentials are mounted in the helper alone: the job cannot read them.
    hidden = "ls /kuberunner/scripts; test -e /kuberunner/transfer || echo no transfer dir here"
    good = gitlab.enqueue(script_job("echo fine > log.txt", hidden, artifacts=artifacts))
    bad = gitlab.enqueue(script_job("echo broken > log.txt", "exit 3", artifacts=artifacts))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await finished(good, runner, within=120)
        await finished(bad, runner, within=120)
    finally:
        assert await runner.stop() == 0
    assert good.state == "success" and not good.artifacts, good.text[-2000:]
    assert b"Uploading artifacts" not in good.text
    assert b"\nno transfer dir here\n" in good.text
    listing = good.text.split(b"$ ls /kuberunner/scripts")[1].split(b"\x1b[32;1m$")[0]
    assert b"job-token" not in listing and b"upload_artifacts_on_failure" in listing
    assert (bad.state, bad.exit_code) == ("failed", 3), bad.text[-2000:]
    assert zipfile.ZipFile(io.BytesIO(bad.artifact("archive").data)).read("log.txt") == b"broken\n"
    assert section_start("upload_artifacts_on_failure", "Uploading artifacts for failed job") in unstamped(
        bad.text
    )


async def test_too_large_archive_fails_the_job_and_5xx_is_retried(
    gitlab_cluster: Cluster, gitlab: FakeGitLab, tmp_path: Path
) -> None:
    gitlab.inject(Fault("POST", "/artifacts", 413))
    large = gitlab.enqueue(script_job("echo data > a.txt", artifacts=[archive("a", "a.txt")]))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await finished(large, runner, within=120)
        gitlab.inject(Fault("POST", "/artifacts", 502))
        flaky = gitlab.enqueue(script_job("echo data > a.txt", artifacts=[archive("a", "a.txt")]))
        await finished(flaky, runner, within=120)
    finally:
        assert await runner.stop() == 0
    assert (large.state, large.failure_reason, large.exit_code) == ("failed", "script_failure", 1)
    text = unstamped(large.text)
    assert (
        b'ERROR: Uploading artifacts as "archive" to coordinator... too large archive\nFATAL: too large\n'
        + section_end("upload_artifacts_on_success")
        in text
    ), text[-1500:]
    assert text.endswith(b"ERROR: Job failed: exit code 1\x1b[0;m\n")
    assert flaky.state == "success", flaky.text[-2000:]
    assert b'WARNING: Uploading artifacts as "archive" to coordinator... 502; retrying\n' in flaky.text
    assert zip_names(flaky.artifact("archive").data) == ["a.txt"]


async def test_a_missing_dependency_fails_before_the_script(
    gitlab_cluster: Cluster, gitlab: FakeGitLab, tmp_path: Path
) -> None:
    empty = gitlab.enqueue(script_job("true"))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await finished(empty, runner, within=120)
        dep = {"id": empty.id, "name": "empty", "token": empty.token, "artifacts_file": {"filename": "a.zip"}}
        job = gitlab.enqueue(script_job("echo never ran", dependencies=[dep]))
        await finished(job, runner, within=120)
    finally:
        assert await runner.stop() == 0
    assert (job.state, job.exit_code) == ("failed", 1), job.text[-2000:]
    assert f"Downloading artifacts from coordinator... not found  id={empty.id}\n".encode() in job.text
    assert b"never ran" not in job.text
