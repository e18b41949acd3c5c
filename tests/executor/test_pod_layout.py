"""The pod's containers and where each stage runs: one `build` container, plus `helper` for git jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from kuberunner.cluster.server import EmbeddedCluster
from kuberunner.executor import podhealth
from kuberunner.executor.podspec import PodDesign, build_pod
from kuberunner.executor.stages import StagePlan
from kuberunner.kube import config as kube_config
from kuberunner.kube.client import KubeClient
from kuberunner.shell.layout import PodPaths

GIT = StagePlan(git_sources=True)
ARCHIVE = StagePlan(git_sources=False)


def test_git_jobs_fetch_sources_in_the_helper_and_run_user_stages_in_build() -> None:
    assert GIT.containers == ("build", "helper")
    assert [GIT.container(s) for s in ("get_sources", "step_script", "after_script")] == [
        "helper",
        "build",
        "build",
    ]
    assert GIT.header("get_sources") == "Getting source from Git repository"


def test_archive_jobs_keep_a_single_build_container() -> None:
    assert ARCHIVE.containers == ("build",)
    assert {ARCHIVE.container(s) for s in ("get_sources", "step_script", "after_script")} == {"build"}
    assert ARCHIVE.header("get_sources") == "Preparing the project directory"
    assert ARCHIVE.header("step_script") == 'Executing "step_script" stage of the job script'
    assert ARCHIVE.header("after_script") == "Running after_script"


def design(helper_image: str | None) -> PodDesign:
    return PodDesign(
        name="p",
        namespace="ns",
        image="ruby:3",
        runner_name="r",
        job_id="1",
        job_name="j",
        paths=PodPaths(),
        memory_limit="64Mi",
        helper_image=helper_image,
    )


def test_the_helper_container_shares_pid1_volumes_and_stdin_settings_but_not_limits() -> None:
    build, helper = build_pod(design("registry/helper:1"))["spec"]["containers"]
    assert (build["name"], helper["name"]) == ("build", "helper")
    assert (build["image"], helper["image"]) == ("ruby:3", "registry/helper:1")
    for key in ("command", "stdin", "stdinOnce", "tty", "volumeMounts"):
        assert helper[key] == build[key], key
    assert (helper["stdin"], helper["stdinOnce"], helper["tty"]) == (True, False, False)
    assert build["resources"] == {"limits": {"memory": "64Mi"}} and "resources" not in helper


def test_no_helper_image_means_no_helper_container() -> None:
    assert [c["name"] for c in build_pod(design(None))["spec"]["containers"]] == ["build"]


def pod(**states: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns"},
        "status": {
            "phase": "Running" if states else "Pending",
            "containerStatuses": [{"name": name, "state": state} for name, state in states.items()],
        },
    }


RUNNING: dict[str, Any] = {"running": {"startedAt": "2024-01-01T00:00:00Z"}}
CREATING: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
KILLED: dict[str, Any] = {"terminated": {"exitCode": 137, "reason": "Error"}}


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        pytest.param(
            {"build": RUNNING, "helper": CREATING},
            podhealth.Waiting("Running: ContainerCreating"),
            id="helper-not-running-yet",
        ),
        pytest.param({"build": RUNNING}, podhealth.Waiting("Running"), id="helper-not-reported-yet"),
        pytest.param({"build": RUNNING, "helper": RUNNING}, podhealth.Ready(), id="both-running"),
        pytest.param(
            {"build": RUNNING, "helper": KILLED},
            podhealth.Broken("pod ns/p: container helper ended: exit code 137, reason Error"),
            id="helper-ended",
        ),
        pytest.param(
            {"build": KILLED, "helper": RUNNING},
            podhealth.Broken("pod ns/p: container build ended: exit code 137, reason Error"),
            id="build-ended",
        ),
        pytest.param(
            {"build": RUNNING, "helper": {"waiting": {"reason": "ErrImagePull", "message": "no such image"}}},
            podhealth.Broken("pod ns/p: ErrImagePull: no such image", image_pull=True),
            id="helper-image-missing",
        ),
    ],
)
def test_a_git_job_needs_both_containers(states: dict[str, dict[str, Any]], expected: object) -> None:
    assert podhealth.assess("MODIFIED", pod(**states), containers=GIT.containers) == expected


def test_an_archive_job_ignores_containers_it_does_not_have() -> None:
    state = pod(build=RUNNING, helper=KILLED)
    assert podhealth.assess("MODIFIED", state, containers=ARCHIVE.containers) == podhealth.Ready()


def test_after_script_when_follows_the_job_result() -> None:
    from kuberunner.executor.job import JobRequest, after_script_due
    from kuberunner.executor.results import Observation
    from kuberunner.job.spec import JobSpec

    def due(when: str, seen: Observation) -> bool:
        spec = JobSpec(name="j", script=("true",), after_script=("echo after",))
        request = JobRequest(
            job=spec,
            job_id="1",
            variables=(),
            project_dir="/builds/p",
            project_archive=None,
            timeout=10,
            after_script_when=when,
        )  # type: ignore[arg-type]
        return after_script_due(request, seen)

    passed, failed, lost = (
        Observation((0, 0)),
        Observation((0, 3)),
        Observation((0,), system_error="pod gone"),
    )
    assert [due("always", s) for s in (passed, failed, lost)] == [True, True, False]
    assert [due("on_success", s) for s in (passed, failed)] == [True, False]
    assert [due("on_failure", s) for s in (passed, failed)] == [False, True]
    assert due("always", Observation((0,), timed_out_after=3)) is True


@pytest.fixture
async def embedded_client() -> AsyncIterator[KubeClient]:
    async with EmbeddedCluster() as embedded:
        cfg = await kube_config.load_kubeconfig(embedded.kubeconfig_path)
        async with await KubeClient.open(cfg) as client:
            yield client


async def test_the_stored_pod_mounts_no_token_and_adds_no_privilege(embedded_client: KubeClient) -> None:
    body = build_pod(design("registry/helper:1"))
    body["metadata"]["namespace"] = "default"
    await embedded_client.create_pod("default", body)
    try:
        stored = (await embedded_client.get_pod("default", "p"))["spec"]
    finally:
        await embedded_client.delete_pod("default", "p", grace_seconds=0)
    assert stored["automountServiceAccountToken"] is False
    for container in stored["containers"]:
        assert container["securityContext"] == {"privileged": False, "capabilities": {"drop": ["NET_RAW"]}}
