"""CI_JOB_STATUS in after_script, and variables expanded where GitLab Runner expands them (issue 13)."""

from __future__ import annotations

from pathlib import Path

from cli.execution import Cluster
from real.cluster import HELPER_IMAGE

from .fake_gitlab import FakeGitLab
from .runner_process import finished, script_job, started_runner, until

STATUS = 'echo "status=$CI_JOB_STATUS"'


def variable(key: str, value: str, *, raw: bool = False) -> dict[str, object]:
    return {"key": key, "value": value, "public": True, "masked": False, "raw": raw}


async def test_after_script_sees_how_the_job_ended(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    gitlab.trace_interval = 0.3
    good = gitlab.enqueue(script_job(STATUS, after=(STATUS,)))
    bad = gitlab.enqueue(script_job("exit 2", after=(STATUS,)))
    stopped = gitlab.enqueue(script_job("while :; do echo tick; sleep 0.2; done", after=(STATUS,)))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await finished(good, runner)
        await finished(bad, runner)
        await until(lambda: b"tick\n" in stopped.text, what="the job to tick")
        gitlab.cancel(stopped)
        await finished(stopped, runner)
    finally:
        assert await runner.stop() == 0
    assert good.state == "success"
    assert b"\nstatus=running\n" in good.text  # the script itself sees `running`, as in GitLab
    assert good.text.count(b"\nstatus=success\n") == 1, good.text[-1500:]
    assert bad.state == "failed" and b"\nstatus=failed\n" in bad.text, bad.text[-1500:]
    assert stopped.state == "canceled" and b"\nstatus=canceled\n" in stopped.text, stopped.text[-1500:]


async def test_variables_image_and_values_are_expanded_raw_ones_are_not(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    repository, _, tag = HELPER_IMAGE.rpartition(":")  # an image the tier's cluster has, tag from a variable
    job = gitlab.enqueue(
        script_job(
            'echo "a=$A b=$B c=$C d=$D"',
            variables=[
                variable("BASE", "base"),
                variable("A", "$BASE/${BASE}-x"),
                variable("B", "$$BASE $UNKNOWN."),
                variable("C", "$BASE", raw=True),
                variable("TAG", tag),
                variable("D", "${CI_PROJECT_PATH}"),
            ],
            image={"name": f"{repository}:$TAG"},
        )
    )
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await finished(job, runner)
    finally:
        assert await runner.stop() == 0
    assert job.state == "success", job.text[-1500:]
    assert b"\na=base/base-x b=$BASE . c=$BASE d=group/project\n" in job.text
