"""Bad input: one clear log line, the job fails as a system failure, the runner keeps going (issue 7)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from cli.execution import Cluster

from .fake_gitlab import FakeGitLab
from .runner_process import RunnerProcess, finished, script_job, started_runner, until


@pytest.mark.parametrize(
    ("spec", "logged"),
    [
        ({"steps": "not a list"}, "job payload: 'steps' must be a list"),
        ({**script_job("true"), "image": {"name": "bad image!"}}, "image 'bad image!' is not a valid image"),
        (
            {**script_job("true"), "variables": [{"key": "BAD-KEY", "value": "x"}]},
            "variable 'BAD-KEY' is not a valid variable name",
        ),
        (
            {**script_job("true"), "variables": [{"key": "GIT_STRATEGY", "value": "teleport"}]},
            "GIT_STRATEGY 'teleport' is not one of clone, fetch, none",
        ),
    ],
    ids=["malformed-payload", "bad-image", "bad-variable-name", "bad-git-strategy"],
)
async def test_unusable_job_fails_as_system_failure_and_the_runner_goes_on(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path, spec: dict[str, Any], logged: str
) -> None:
    bad = gitlab.enqueue(spec)
    good = gitlab.enqueue(script_job("echo still running"))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await finished(bad, runner)
        await finished(good, runner)
    finally:
        assert await runner.stop() == 0
    assert (bad.state, bad.failure_reason) == ("failed", "runner_system_failure")
    assert b"ERROR: Job failed (system failure)" in bad.text
    log = runner.log()
    assert [line for line in log.splitlines() if logged in line] != [], log
    assert "Traceback" not in log
    assert good.state == "success"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_rejected_token_and_unreachable_url_are_logged_and_other_runners_work(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    good = gitlab.add_runner()
    config = tmp_path / "config.toml"
    entries = [
        ("rejected", gitlab.base_url, "glrt-unknown"),
        ("unreachable", f"http://127.0.0.1:{closed_port()}", "glrt-whatever"),
        ("good", gitlab.base_url, good.token),
    ]
    config.write_text(
        "concurrent = 3\ncheck_interval = 1\n"
        + "".join(
            f'[[runners]]\nname = "{name}"\nurl = "{url}"\ntoken = "{token}"\nexecutor = "kubernetes"\n'
            for name, url, token in entries
        )
    )
    job = gitlab.enqueue(script_job("echo served"))
    runner = RunnerProcess(gitlab_cluster, config)
    try:
        await finished(job, runner)
        await until(
            lambda: (
                "runner rejected: requesting a job: GitLab answered 403" in runner.log()
                and "runner unreachable: requesting a job: ClientConnectorError" in runner.log()
            ),
            within=30,
            what="both log lines",
        )
    finally:
        assert await runner.stop() == 0
    assert job.state == "success"
    assert "Traceback" not in runner.log()
