"""The job token reaches git without argv, the remote URL or .git/config (issue 10)."""

from __future__ import annotations

from pathlib import Path

from cli.execution import Cluster

from .fake_gitlab import FakeGitLab
from .runner_process import finished, script_job, started_runner

# CI_JOB_TOKEN and CI_REPOSITORY_URL carry the token on purpose (GitLab gives them to every job).
LOOK = [
    "cat .git/config",
    "env | grep -v -e '^CI_JOB_TOKEN=' -e '^CI_REPOSITORY_URL=' | sort",
    "ps -ef",
    "ls -la /tmp",
    "cat version.txt",
]


async def test_clone_authenticates_without_the_token_in_argv_url_or_git_config(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    job = gitlab.enqueue(script_job(*LOOK))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await finished(job, runner)
    finally:
        assert await runner.stop() == 0
    assert job.state == "success", job.text
    assert b"\nversion 3\n" in job.text  # cloned through the authenticated git http-backend
    assert gitlab.clone_requests >= 2
    assert gitlab.token_in_argv == []
    sent = bytes(job.received)  # what the runner sent, before the server's own masking
    assert job.token.encode() not in sent
    assert b"[MASKED]" not in sent
    host = gitlab.base_url.encode()
    assert b"\turl = " + host + b"/group/project.git\n" in sent
    assert b"extraHeader" not in sent and b"Authorization" not in sent
