"""A GitLab job's variables against config.toml's overwrite bounds on `kuberunner run` (issue 15): GitLab
sends the variables, the project's and the pipeline's alike, and none widens what config.toml allows."""

from __future__ import annotations

from pathlib import Path

from cli.execution import Cluster

from .fake_gitlab import FakeGitLab
from .runner_process import finished, script_job, started_runner

BOUNDS = '    cpu_limit = "100m"\n    cpu_limit_overwrite_max_allowed = "200m"\n'


def with_variables(*pairs: tuple[str, str]) -> dict[str, object]:
    return {
        **script_job("echo the script ran"),
        "variables": [{"key": k, "value": v, "public": True} for k, v in pairs],
    }


async def test_more_cpu_than_allowed_is_a_system_failure_before_any_pod(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    greedy = gitlab.enqueue(with_variables(("CPU", "2"), ("KUBERNETES_CPU_LIMIT", "$CPU")))
    modest = gitlab.enqueue(with_variables(("KUBERNETES_CPU_LIMIT", "150m")))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path, kubernetes=BOUNDS)
    try:
        await finished(greedy, runner, within=120)
        await finished(modest, runner, within=120)
    finally:
        assert await runner.stop() == 0
    assert (greedy.state, greedy.failure_reason) == ("failed", "runner_system_failure")
    reason = (
        'invalid build limits specified: the resource "CPULimit" requested "2" is higher than limit '
        'allowed "200m"'
    )
    assert f"\x1b[31;1mERROR: Preparation failed: {reason}\x1b[0;m\n".encode() in greedy.text, greedy.text[
        -2000:
    ]
    assert b"the script ran" not in greedy.text
    assert modest.state == "success", modest.text[-2000:]
    assert b'"CPULimit" overwritten with "150m"\n' in modest.text
    assert b"the script ran" in modest.text
