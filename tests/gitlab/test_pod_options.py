"""A GitLab job's variables against config.toml's overwrite bounds on `kuberunner run` (issue 15): GitLab
sends the variables, the project's and the pipeline's alike, and none widens what config.toml allows."""

from __future__ import annotations

import os
from pathlib import Path

from cli.execution import Cluster

from .fake_gitlab import FakeGitLab, FakeJob
from .runner_process import finished, script_job, started_runner

BOUNDS = '    cpu_limit = "100m"\n    cpu_limit_overwrite_max_allowed = "200m"\n'


def with_variables(*pairs: tuple[str, str]) -> dict[str, object]:
    return {
        **script_job("echo the script ran"),
        "variables": [{"key": k, "value": v, "public": True} for k, v in pairs],
    }


def assert_refused_before_the_script(job: FakeJob, reason: str) -> None:
    """The job failed as a system failure for `reason` before its script ran."""
    assert (job.state, job.failure_reason) == ("failed", "runner_system_failure")
    assert f"\x1b[31;1mERROR: Preparation failed: {reason}\x1b[0;m\n".encode() in job.text, job.text[-2000:]
    assert b"the script ran" not in job.text


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
    reason = (
        'invalid build limits specified: the resource "CPULimit" requested "2" is higher than limit '
        'allowed "200m"'
    )
    assert_refused_before_the_script(greedy, reason)
    assert modest.state == "success", modest.text[-2000:]
    assert b'"CPULimit" overwritten with "150m"\n' in modest.text
    assert b"the script ran" in modest.text


async def run_all(gitlab: FakeGitLab, cluster: Cluster, tmp_path: Path, *jobs: FakeJob) -> None:
    """Runs `jobs` on a runner that allows the `never` and `if-not-present` pull policies only."""
    allowed = '    allowed_pull_policies = ["never", "if-not-present"]\n'
    runner = await started_runner(gitlab, cluster, tmp_path, kubernetes=allowed)
    try:
        for job in jobs:
            await finished(job, runner, within=120)
    finally:
        assert await runner.stop() == 0


async def test_a_jobs_image_pull_policy_must_be_one_config_allows(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    # An image the cluster has: the real test cluster reaches no registry.
    image = os.environ.get("KUBERNETES_IMAGE", "alpine:3.19")
    pulling = gitlab.enqueue(
        script_job("echo the script ran", image={"name": image, "pull_policy": ["always"]})
    )
    local = gitlab.enqueue(script_job("echo the script ran", image={"name": image, "pull_policy": ["never"]}))
    unknown = gitlab.enqueue(script_job("echo the script ran", image={"name": image, "pull_policy": ["x;y"]}))
    await run_all(gitlab, gitlab_cluster, tmp_path, pulling, local, unknown)
    reason = (
        f"failed to pull image '{image}': pull_policy ([Always]) defined in GitLab pipeline config is not "
        "one of the allowed_pull_policies ([Never IfNotPresent])"
    )
    assert_refused_before_the_script(pulling, reason)
    assert local.state == "success", local.text[-2000:]
    assert b"the script ran" in local.text
    assert b"pull_policy" not in local.text
    assert (unknown.state, unknown.failure_reason) == ("failed", "runner_system_failure")
    assert b"image pull_policy 'x;y' is not one of always, if-not-present, never" in unknown.text, (
        unknown.text
    )
    assert b"the script ran" not in unknown.text


async def test_a_services_pull_policy_must_be_one_config_allows(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    image = os.environ.get("KUBERNETES_IMAGE", "alpine:3.19")

    def with_service(policy: list[str]) -> dict[str, object]:
        service = {"name": image, "entrypoint": ["sh", "-c"], "command": ["sleep 600"], "pull_policy": policy}
        return script_job("echo the script ran", services=[service])

    pulling = gitlab.enqueue(with_service(["always"]))
    local = gitlab.enqueue(with_service(["never"]))
    unknown = gitlab.enqueue(with_service(["sometimes"]))
    await run_all(gitlab, gitlab_cluster, tmp_path, pulling, local, unknown)
    reason = (
        f"failed to pull image '{image}': pull_policy ([Always]) defined in GitLab pipeline config is not "
        "one of the allowed_pull_policies ([Never IfNotPresent])"
    )
    assert_refused_before_the_script(pulling, reason)
    assert local.state == "success", local.text[-2000:]
    assert b"the script ran" in local.text
    assert (unknown.state, unknown.failure_reason) == ("failed", "runner_system_failure")
    assert b"services[0] pull_policy 'sometimes' is not one of always, if-not-present, never" in unknown.text
