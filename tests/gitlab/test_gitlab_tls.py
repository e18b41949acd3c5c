"""GitLab over HTTPS: `tls-ca-file` / `--tls-ca-file`, and a certificate problem fails at once (issue 10)."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cli.execution import Cluster
from real.cluster import TEST_HOST_ADDRESS

from kuberunner.cluster import tls
from kuberunner.runner.metrics import short_token

from .fake_gitlab import FakeGitLab
from .runner_process import RunnerProcess, finished, script_job, write_config
from .test_registration import kuberunner


@pytest.fixture
async def https_gitlab(repository: tuple[Path, list[str]], tmp_path: Path) -> AsyncIterator[FakeGitLab]:
    # On the real tier the job's pod clones from it too: it listens where pods reach this machine.
    credentials = tls.generate(hosts=(TEST_HOST_ADDRESS,))
    (tmp_path / "ca.pem").write_bytes(credentials.cert_pem)
    fake = FakeGitLab(repository[0])
    await fake.start(host=TEST_HOST_ADDRESS, ssl_context=tls.server_context(credentials, tmp_path / "server"))
    yield fake
    await fake.close()


async def test_an_untrusted_certificate_fails_at_once_naming_the_ca_problem(
    https_gitlab: FakeGitLab, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    created = https_gitlab.add_runner()
    (tmp_path / "token").write_text(created.token + "\n")
    status, out = await kuberunner(
        "register", "-c", str(config), "--url", https_gitlab.base_url, "--token-file", str(tmp_path / "token")
    )
    host = https_gitlab.base_url.removeprefix("https://")
    assert (status, out) == (
        1,
        (
            "ERROR: registering runner failed: verifying the runner: GitLab's TLS certificate at "
            f"{host} cannot be verified against the system's CAs (no tls-ca-file): self-signed certificate\n"
        ),
    )
    assert https_gitlab.requests == []


async def test_tls_ca_file_on_register_is_kept_for_verify(https_gitlab: FakeGitLab, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    created = https_gitlab.add_runner()
    (tmp_path / "token").write_text(created.token + "\n")
    ca = str(tmp_path / "ca.pem")
    status, out = await kuberunner(
        "register",
        "-c",
        str(config),
        "--url",
        https_gitlab.base_url,
        "--token-file",
        str(tmp_path / "token"),
        "--tls-ca-file",
        ca,
    )
    assert status == 0, out
    assert tomllib.loads(config.read_text())["runners"][0]["tls-ca-file"] == ca
    status, out = await kuberunner("verify", "-c", str(config))
    assert (status, out) == (0, "Verifying runner kuberunner: is valid\n")


async def test_a_missing_tls_ca_file_is_bad_input(https_gitlab: FakeGitLab, tmp_path: Path) -> None:
    status, out = await kuberunner(
        "register",
        "-c",
        str(tmp_path / "config.toml"),
        "--url",
        https_gitlab.base_url,
        "--token",
        "glrt-x",
        "--tls-ca-file",
        str(tmp_path / "nope.pem"),
    )
    assert (status, out) == (
        2,
        f"kuberunner: error: tls-ca-file {tmp_path}/nope.pem: No such file or directory\n",
    )


async def test_run_trusts_tls_ca_file_and_stops_at_once_without_it(
    https_gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    registered = https_gitlab.add_runner()
    for name in ("untrusted", "trusted"):
        (tmp_path / name).mkdir()
    untrusted = write_config(
        tmp_path / "untrusted" / "config.toml", url=https_gitlab.base_url, token=registered.token
    )
    runner = RunnerProcess(gitlab_cluster, untrusted)
    status = await asyncio.wait_for(asyncio.to_thread(runner.process.wait), timeout=30)
    await runner.stop()
    assert status == 1
    problems = [line for line in runner.log().splitlines() if "TLS certificate" in line]
    assert problems == [
        f"kuberunner: runner kuberunner: requesting a job: GitLab's TLS certificate at "
        f"{https_gitlab.base_url.removeprefix('https://')} cannot be verified against the system's CAs "
        "(no tls-ca-file): self-signed certificate; this runner takes no more jobs"
        f"  runner={short_token(registered.token)}"
    ]

    job = https_gitlab.enqueue(script_job("cat version.txt", 'head -1 "$CI_SERVER_TLS_CA_FILE"'))
    trusted = write_config(
        tmp_path / "trusted" / "config.toml",
        url=https_gitlab.base_url,
        token=registered.token,
        extra=f'  tls-ca-file = "{tmp_path}/ca.pem"\n',
    )
    runner = RunnerProcess(gitlab_cluster, trusted)
    try:
        await finished(job, runner)
    finally:
        assert await runner.stop() == 0
    assert job.state == "success", job.text
    assert b"\nversion 3\n" in job.text  # cloned over https, trusting tls-ca-file
    assert b"\n-----BEGIN CERTIFICATE-----\n" in job.text
