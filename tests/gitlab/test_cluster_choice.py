"""`run` never falls back to the embedded cluster on its own; `host = "embedded"` asks for it (issue 10)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cli.execution import BIN

from .fake_gitlab import FakeGitLab
from .runner_process import RunnerProcess, clean_env, finished, script_job, write_config

NO_CLUSTER = 78


async def test_run_without_a_cluster_stops_at_start_with_one_line(gitlab: FakeGitLab, tmp_path: Path) -> None:
    # As under a service manager: no $KUBECONFIG, no ~/.kube/config, not in a pod.
    runner = gitlab.add_runner()
    config = write_config(tmp_path / "config.toml", url=gitlab.base_url, token=runner.token)
    job = gitlab.enqueue(script_job("echo must not run on this host"))
    process = await asyncio.create_subprocess_exec(
        str(BIN),
        "run",
        "-c",
        str(config),
        env=clean_env(HOME=str(tmp_path)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == NO_CLUSTER, err
    assert out == b""
    assert err.decode() == (
        "kuberunner: error: no cluster configured: looked for --kubeconfig, [runners.kubernetes] host, "
        "the in-cluster service account, $KUBECONFIG or ~/.kube/config "
        f'({tmp_path}/.kube/config); set [runners.kubernetes] host = "embedded" to run jobs on this '
        "machine\n"
    )
    assert job.state == "pending"
    assert not [r for r in gitlab.requests if r[2] == "/api/v4/jobs/request"]


async def test_run_uses_the_embedded_cluster_when_config_toml_asks_for_it(
    gitlab: FakeGitLab, tmp_path: Path
) -> None:
    runner = gitlab.add_runner()
    config = write_config(
        tmp_path / "config.toml",
        url=gitlab.base_url,
        token=runner.token,
        kubernetes='    host = "embedded"\n',
    )
    job = gitlab.enqueue(script_job("echo on the embedded cluster"))
    process = RunnerProcess(None, config, env=clean_env(HOME=str(tmp_path)))
    try:
        await finished(job, process)
    finally:
        assert await process.stop() == 0
    assert job.state == "success", job.text
    assert b"\non the embedded cluster\n" in job.text


async def test_exec_defaults_to_the_embedded_cluster_and_says_so_first(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text("job:\n  script:\n    - echo local\n")
    process = await asyncio.create_subprocess_exec(
        str(BIN),
        "exec",
        "-f",
        str(tmp_path / ".gitlab-ci.yml"),
        env=clean_env(HOME=str(tmp_path)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err
    assert err.decode().splitlines()[0] == (
        "kuberunner: no cluster configured (looked for --kubeconfig, [runners.kubernetes] host, "
        "the in-cluster service account, $KUBECONFIG or ~/.kube/config); "
        "using the embedded single-node cluster on this machine"
    )
    assert b"\nlocal\n" in out
