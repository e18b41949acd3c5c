"""config.toml's pod keys laid onto the job's pod, and what a job's KUBERNETES_* variables may change of
them (issue 15). A job is hostile input: every widening without a bound in config.toml is ignored or
refused, and the runner's own labels and volumes cannot be taken over."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from kuberunner.config import load_runner_config
from kuberunner.executor import podhealth
from kuberunner.executor.job import JobRequest, run_job
from kuberunner.executor.overwrites import OverwriteRefused, Resolved, resolve
from kuberunner.executor.pod_options import PodOptionsError, apply_pod_options, strategic_merge
from kuberunner.executor.poddeletion import CLEANUP_GRACE_SECONDS, cleanup_grace
from kuberunner.executor.podspec import RUNNER_LABEL, PodDesign, build_pod
from kuberunner.executor.results import JobResult, Success, SystemFailure
from kuberunner.executor.services import ServiceContainer
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.executor.strategy import Exited, JobContext, StageEnd
from kuberunner.job.spec import JobSpec
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import NotFound
from kuberunner.local import executor_settings
from kuberunner.podconfig import ContainerResources, ExtraVolume, PodOptions, PodSpecPatch
from kuberunner.shell.layout import PodPaths
from kuberunner.trace import StreamSink, Trace


def pod(
    options: PodOptions,
    services: tuple[ServiceContainer, ...] = (ServiceContainer(image="postgres:16", aliases=("db",)),),
) -> dict[str, Any]:
    design = PodDesign(
        name="p",
        namespace="ns",
        image="ruby:3",
        runner_name="r",
        job_id="1",
        job_name="j",
        paths=PodPaths(),
        helper_image="helper:1",
        services=services,
    )
    return apply_pod_options(build_pod(design), options)


def containers(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in body["spec"]["containers"]}


def test_resources_go_to_their_container_kind() -> None:
    body = pod(
        PodOptions(
            resources={
                "build": ContainerResources(limits={"cpu": "2"}, requests={"memory": "1Gi"}),
                "helper": ContainerResources(limits={"memory": "128Mi"}),
                "service": ContainerResources(requests={"cpu": "100m"}),
                "pod": ContainerResources(limits={"cpu": "4", "memory": "4Gi"}),
            }
        )
    )
    assert body["spec"]["resources"] == {"limits": {"cpu": "4", "memory": "4Gi"}}
    found = containers(body)
    assert found["build"]["resources"] == {"limits": {"cpu": "2"}, "requests": {"memory": "1Gi"}}
    assert found["helper"]["resources"] == {"limits": {"memory": "128Mi"}}
    assert found["svc-0"]["resources"] == {"requests": {"cpu": "100m"}}


def test_the_runners_labels_volumes_and_mounts_win_over_config() -> None:
    body = pod(
        PodOptions(
            pod_labels={RUNNER_LABEL: "someone-else", "team": "a"},
            volumes=(
                ExtraVolume({"name": "cache", "emptyDir": {}}, {"name": "cache", "mountPath": "/cache"}),
            ),
        )
    )
    assert body["metadata"]["labels"][RUNNER_LABEL] == "r"
    assert body["metadata"]["labels"]["team"] == "a"
    assert [v["name"] for v in body["spec"]["volumes"]] == ["scripts", "logs", "builds", "cache"]
    for container in body["spec"]["containers"]:
        assert {"name": "cache", "mountPath": "/cache"} in container["volumeMounts"], container["name"]


def test_capabilities_follow_gitlab_runner() -> None:
    """NET_RAW is dropped by default; cap_add brings it back; a container's own lists replace these."""
    assert containers(pod(PodOptions()))["build"]["securityContext"] == {
        "privileged": False,
        "capabilities": {"drop": ["NET_RAW"]},
    }
    found = containers(
        pod(
            PodOptions(
                cap_add=("NET_RAW", "SYS_TIME"),
                cap_drop=("SYS_TIME", "MKNOD"),
                container_security_context={"helper": {"capabilities": {"drop": ["ALL"]}}},
            )
        )
    )
    assert found["build"]["securityContext"]["capabilities"] == {
        "add": ["NET_RAW"],
        "drop": ["SYS_TIME", "MKNOD"],
    }
    assert found["helper"]["securityContext"]["capabilities"] == {"add": ["NET_RAW"], "drop": ["ALL"]}


def test_privileged_is_runner_wide_unless_a_container_says_otherwise() -> None:
    found = containers(
        pod(
            PodOptions(
                privileged=True,
                allow_privilege_escalation=False,
                container_security_context={"helper": {"privileged": False}},
            )
        )
    )
    assert found["build"]["securityContext"]["privileged"] is True
    assert found["svc-0"]["securityContext"]["privileged"] is True
    assert found["helper"]["securityContext"]["privileged"] is False
    assert {c["securityContext"]["allowPrivilegeEscalation"] for c in found.values()} == {False}


def test_scheduling_identity_and_dns_keys() -> None:
    body = pod(
        PodOptions(
            node_selector={"disk": "ssd"},
            node_tolerations={"dedicated=ci": "NoSchedule", "spot": ""},
            service_account="builder",
            image_pull_secrets=("reg",),
            pull_policy=("Never", "Always"),
            priority_class_name="low",
            scheduler_name="batch",
            runtime_class_name="gvisor",
            dns_policy="None",
            dns_config={"nameservers": ["10.0.0.10"]},
            host_aliases=({"ip": "10.0.0.1", "hostnames": ["git.local"]},),
            pod_security_context={"runAsNonRoot": True, "runAsUser": 1000},
            pod_termination_grace_period_seconds=20,
        )
    )
    spec = body["spec"]
    assert spec["terminationGracePeriodSeconds"] == 20
    assert spec["nodeSelector"] == {"disk": "ssd"}
    assert spec["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists"},
    ]
    assert (spec["serviceAccountName"], spec["automountServiceAccountToken"]) == ("builder", False)
    assert spec["imagePullSecrets"] == [{"name": "reg"}]
    assert {c["imagePullPolicy"] for c in spec["containers"]} == {"Never"}
    assert (spec["priorityClassName"], spec["schedulerName"], spec["runtimeClassName"]) == (
        "low",
        "batch",
        "gvisor",
    )
    assert (spec["dnsPolicy"], spec["dnsConfig"]) == ("None", {"nameservers": ["10.0.0.10"]})
    # The services' aliases stay: config's host aliases come after them.
    assert spec["hostAliases"][-1] == {"ip": "10.0.0.1", "hostnames": ["git.local"]}
    assert {"ip": "127.0.0.1", "hostnames": ["db"]} in spec["hostAliases"]
    assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000}


def test_patches_of_each_type_apply_in_order() -> None:
    patches = (
        PodSpecPatch(
            "strategic",
            "strategic",
            {
                "containers": [{"name": "build", "env": [{"name": "A", "value": "1"}]}],
                "volumes": [{"name": "logs", "$patch": "delete"}],
            },
        ),
        PodSpecPatch(
            "merge", "merge", {"terminationGracePeriodSeconds": 30, "automountServiceAccountToken": None}
        ),
        PodSpecPatch("json", "json", [{"op": "add", "path": "/hostname", "value": "ci"}]),
    )
    spec = pod(PodOptions(pod_spec_patches=patches))["spec"]
    build = containers({"spec": spec})["build"]
    assert build["env"] == [{"name": "A", "value": "1"}]
    assert build["image"] == "ruby:3"  # merged into, not replaced
    assert [v["name"] for v in spec["volumes"]] == ["scripts", "builds"]
    assert spec["terminationGracePeriodSeconds"] == 30
    assert "automountServiceAccountToken" not in spec
    assert spec["hostname"] == "ci"


def test_a_patch_that_does_not_fit_is_a_clear_error() -> None:
    with pytest.raises(PodOptionsError, match=r"^pod_spec patch 'x' does not apply: "):
        pod(PodOptions(pod_spec_patches=(PodSpecPatch("x", "json", [{"op": "remove", "path": "/nope"}]),)))
    with pytest.raises(PodOptionsError, match="needs 'name' in each element"):
        strategic_merge({"containers": [{"name": "a"}]}, {"containers": [{"image": "x"}]})


BOUNDED = PodOptions(
    resources={
        "build": ContainerResources(
            limits={"cpu": "200m"}, max_limits={"cpu": "400m"}, max_requests={"memory": "1Gi"}
        ),
        "helper": ContainerResources(max_limits={"memory": "512Mi"}),
        "pod": ContainerResources(max_requests={"cpu": "2"}),
    },
    namespace_overwrite_allowed="^ci-",
    pod_labels_overwrite_allowed=".*",
    node_selector_overwrite_allowed="^pool=",
)


def judged(options: PodOptions, **variables: str) -> Resolved:
    return resolve(
        options,
        namespace="ci",
        variables=variables.items(),
        image=None,
        default_image="alpine",
        service_images=(),
    )


def test_overwrites_within_bounds_apply_and_say_so() -> None:
    resolved = judged(
        BOUNDED,
        KUBERNETES_CPU_LIMIT="0.4",
        KUBERNETES_MEMORY_REQUEST="512Mi",
        KUBERNETES_HELPER_MEMORY_LIMIT="256Mi",
        KUBERNETES_POD_CPU_REQUEST="1500m",
        KUBERNETES_NAMESPACE_OVERWRITE="ci-team",
        KUBERNETES_NODE_SELECTOR_1="pool=big",
    )
    assert resolved.namespace == "ci-team"
    assert resolved.options.resources["build"].limits == {"cpu": "0.4"}
    assert resolved.options.resources["build"].requests == {"memory": "512Mi"}
    assert resolved.options.resources["helper"].limits == {"memory": "256Mi"}
    assert resolved.options.node_selector == {"pool": "big"}
    assert resolved.notes == (
        '"Namespace" overwritten with "ci-team"',
        '"NodeSelector" "pool" overwritten with "big"',
        '"CPULimit" overwritten with "0.4"',
        '"MemoryRequest" overwritten with "512Mi"',
        '"HelperMemoryLimit" overwritten with "256Mi"',
        '"PodCPURequest" overwritten with "1500m"',
    )
    assert resolved.options.resources["pod"].requests == {"cpu": "1500m"}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"KUBERNETES_CPU_LIMIT": "401m"},
            'invalid build limits specified: the resource "CPULimit" requested "401m" is higher than limit '
            'allowed "400m"',
        ),
        (
            {"KUBERNETES_CPU_LIMIT": "1"},
            'invalid build limits specified: the resource "CPULimit" requested "1" is higher than '
            'limit allowed "400m"',
        ),
        (
            {"KUBERNETES_HELPER_MEMORY_LIMIT": "1Gi"},
            'invalid helper limits specified: the resource "HelperMemoryLimit" requested "1Gi" is '
            'higher than limit allowed "512Mi"',
        ),
        (
            {"KUBERNETES_MEMORY_REQUEST": "lots"},
            'invalid build requests specified: "lots" is not a Kubernetes quantity '
            "(KUBERNETES_MEMORY_REQUEST)",
        ),
        (
            {"KUBERNETES_NAMESPACE_OVERWRITE": "kube-system"},
            'provided value "kube-system" does not match "^ci-"',
        ),
        ({"KUBERNETES_NODE_SELECTOR_1": "zone=x"}, 'provided value "zone=x" does not match "^pool="'),
        ({"KUBERNETES_POD_LABELS_1": "novalue"}, 'provided value "novalue" does not match "k=v"'),
    ],
)
def test_overwrites_beyond_bounds_refuse_the_job(variables: dict[str, str], message: str) -> None:
    with pytest.raises(OverwriteRefused) as caught:
        judged(BOUNDED, **variables)
    assert str(caught.value) == message


def test_without_a_bound_a_variable_changes_nothing() -> None:
    """GitLab Runner ignores these: no *_overwrite_max_allowed, no *_overwrite_allowed."""
    resolved = judged(
        PodOptions(service_account="builder", resources={"build": ContainerResources(limits={"cpu": "1"})}),
        KUBERNETES_CPU_LIMIT="64",
        KUBERNETES_SERVICE_CPU_LIMIT="64",
        KUBERNETES_NAMESPACE_OVERWRITE="kube-system",
        KUBERNETES_SERVICE_ACCOUNT_OVERWRITE="cluster-admin",
        KUBERNETES_NODE_SELECTOR_1="kubernetes.io/hostname=control-plane",
        KUBERNETES_NODE_TOLERATIONS_1="node-role.kubernetes.io/control-plane:NoSchedule",
        KUBERNETES_POD_ANNOTATIONS_1="a=b",
        KUBERNETES_PRIVILEGED="true",
    )
    assert resolved.namespace == "ci"
    assert resolved.options.service_account == "builder"
    assert resolved.options.resources["build"].limits == {"cpu": "1"}
    assert resolved.options.resources["service"].limits == {}
    assert (resolved.options.node_selector, resolved.options.node_tolerations) == ({}, {})
    assert resolved.options.pod_annotations == {}
    assert resolved.options.privileged is None
    assert resolved.notes == ()


def test_a_label_variable_cannot_take_over_the_runners_own_label() -> None:
    """Even with every label allowed, the label the runner finds its pods by stays its own."""
    resolved = judged(BOUNDED, KUBERNETES_POD_LABELS_1=f"{RUNNER_LABEL}=victim")
    assert resolved.options.pod_labels == {RUNNER_LABEL: "victim"}
    assert pod(resolved.options)["metadata"]["labels"][RUNNER_LABEL] == "r"


def test_toleration_variables_take_gitlab_runners_form() -> None:
    resolved = judged(
        PodOptions(node_tolerations_overwrite_allowed=".*"),
        KUBERNETES_NODE_TOLERATIONS_1="gpu=true:NoSchedule",
        KUBERNETES_NODE_TOLERATIONS_2="spot:PreferNoSchedule",
    )
    assert resolved.options.node_tolerations == {"gpu=true": "NoSchedule", "spot": "PreferNoSchedule"}


@pytest.mark.parametrize(
    ("image", "services", "message"),
    [
        (
            "docker.io/evil:1",
            (),
            'the "docker.io/evil:1" image is not present on list of allowed images: '
            "ruby:*, registry.local/**",
        ),
        (
            "ruby:3",
            ("redis:7",),
            'the "redis:7" image is not present on list of allowed services: postgres:*',
        ),
    ],
)
def test_images_outside_the_allowed_lists_are_refused(
    image: str, services: tuple[str, ...], message: str
) -> None:
    options = PodOptions(allowed_images=("ruby:*", "registry.local/**"), allowed_services=("postgres:*",))
    with pytest.raises(OverwriteRefused) as caught:
        resolve(
            options,
            namespace="ci",
            variables=(),
            image=image,
            default_image="alpine",
            service_images=services,
        )
    assert str(caught.value) == message


def test_allowed_images_pass_and_the_configured_image_is_always_allowed() -> None:
    options = PodOptions(allowed_images=("ruby:*", "registry.local/**"), allowed_services=("postgres:*",))
    for image in ("ruby:3", "registry.local/team/app:1", "alpine", None):
        resolve(
            options,
            namespace="ci",
            variables=(),
            image=image,
            default_image="alpine",
            service_images=("postgres:16",),
        )


def test_a_pull_policy_outside_the_allowed_ones_is_refused() -> None:
    options = PodOptions(pull_policy=("IfNotPresent",), allowed_pull_policies=("Always",))
    with pytest.raises(OverwriteRefused) as caught:
        judged(options)
    assert str(caught.value) == (
        "the configured PullPolicies ([IfNotPresent]) are not allowed by AllowedPullPolicies ([Always])"
    )


def test_cleanup_grace_is_config_or_the_default() -> None:
    assert (cleanup_grace(None), cleanup_grace(0), cleanup_grace(30)) == (CLEANUP_GRACE_SECONDS, 0, 30)


def test_a_pod_the_scheduler_cannot_place_says_why_while_it_waits() -> None:
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
    }
    pending = {
        "metadata": {"name": "p", "namespace": "ns"},
        "status": {"phase": "Pending", "conditions": [condition]},
    }
    assert podhealth.assess("MODIFIED", pending) == podhealth.Waiting(
        f'Pending: Unschedulable: "{condition["message"]}"'
    )
    not_yet = {"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Pending"}}
    assert podhealth.assess("MODIFIED", not_yet) == podhealth.Waiting("Pending")


@pytest.mark.parametrize(
    ("reason", "another_policy_may_help"),
    [
        ("ErrImageNeverPull", True),
        ("ErrImagePull", True),
        ("ImagePullBackOff", True),
        ("InvalidImageName", False),
        ("CreateContainerConfigError", False),
    ],
)
def test_only_a_failed_pull_makes_the_runner_try_the_next_pull_policy(
    reason: str, another_policy_may_help: bool
) -> None:
    waiting = {"name": "build", "state": {"waiting": {"reason": reason, "message": "m"}}}
    body = {"metadata": {"namespace": "ns", "name": "p"}, "status": {"containerStatuses": [waiting]}}
    assert podhealth.assess("MODIFIED", body) == podhealth.Broken(
        f"pod ns/p: {reason}: m", image_pull=another_policy_may_help
    )


def job_pull_policy(options: PodOptions, wanted: tuple[str, ...]) -> tuple[str, ...]:
    resolved = resolve(
        options,
        namespace="ci",
        variables=(),
        image="ruby:3",
        default_image="alpine",
        image_pull_policy=wanted,
    )
    return resolved.options.pull_policy


@pytest.mark.parametrize(
    ("options", "wanted", "used"),
    [
        pytest.param(
            PodOptions(pull_policy=("Never",), allowed_pull_policies=("Always", "IfNotPresent")),
            ("IfNotPresent", "Always"),
            ("IfNotPresent", "Always"),
            id="allowed-replaces-the-configured-list",
        ),
        pytest.param(
            PodOptions(pull_policy=("Never", "IfNotPresent")),
            ("IfNotPresent",),
            ("IfNotPresent",),
            id="the-configured-list-is-the-allowed-one-by-default",
        ),
        pytest.param(PodOptions(pull_policy=("Always",)), (), ("Always",), id="none-asked-keeps-config"),
    ],
)
def test_a_jobs_allowed_image_pull_policy_is_used_for_its_pod(
    options: PodOptions, wanted: tuple[str, ...], used: tuple[str, ...]
) -> None:
    assert job_pull_policy(options, wanted) == used


@pytest.mark.parametrize(
    ("options", "allowed"),
    [
        pytest.param(PodOptions(), "[]", id="nothing-configured-allows-nothing"),
        pytest.param(PodOptions(pull_policy=("Never",)), "[Never]", id="only-the-configured-list"),
        pytest.param(
            PodOptions(pull_policy=("Always",), allowed_pull_policies=("Never", "IfNotPresent")),
            "[Never IfNotPresent]",
            id="allowed-list-wins",
        ),
    ],
)
def test_a_job_cannot_pick_a_pull_policy_the_runner_does_not_allow(options: PodOptions, allowed: str) -> None:
    # A hostile job asking for `always` (a pull past the node's cached, vetted image) is refused whole,
    # even when it lists an allowed policy first.
    with pytest.raises(OverwriteRefused) as caught:
        job_pull_policy(options, ("Never", "Always") if allowed != "[]" else ("Always",))
    wanted = "[Never Always]" if allowed != "[]" else "[Always]"
    assert str(caught.value) == (
        f"failed to pull image 'ruby:3': pull_policy ({wanted}) defined in GitLab pipeline config "
        f"is not one of the allowed_pull_policies ({allowed})"
    )


def test_poll_interval_is_the_period_of_the_gets_beside_the_watch_while_the_pod_starts(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[runners]]\nname = "r"\n[runners.kubernetes]\npoll_interval = 7\n')
    settings = executor_settings(load_runner_config(config).runners[0], "ci")
    assert settings.pod_poll_interval == 7.0
    assert podhealth.starting(settings.pod_poll_interval).probe_every == 7.0
    assert executor_settings(None, "ci").pod_poll_interval == 3.0  # GitLab Runner's default


class PullingCluster:
    """A cluster that has no image: under `Never` a pod waits with ErrImageNeverPull, under any other
    policy its containers run (as if a registry answered)."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.created: list[tuple[str, str]] = []
        self.deleted: list[str] = []

    async def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        policy = body["spec"]["containers"][0].get("imagePullPolicy", "")
        self.created.append((name, policy))
        state = (
            {"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}}
            if policy == "Never"
            else {"running": {}}
        )
        statuses = [{"name": c["name"], "state": state} for c in body["spec"]["containers"]]
        self.pods[name] = {
            **body,
            "metadata": {**body["metadata"], "uid": f"uid-{name}"},
            "status": {"phase": "Pending", "containerStatuses": statuses},
        }
        return self.pods[name]

    async def get_pod(self, namespace: str, name: str, *, timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109
        if name in self.deleted:
            raise NotFound(404, "NotFound", f'pods "{name}" not found')
        return self.pods[name]

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return body

    async def delete_pod(self, namespace: str, name: str, *, grace_seconds: int | None = None) -> None:
        self.deleted.append(name)

    async def watch_pod(
        self, namespace: str, name: str, *, resource_version: str | None = None, bookmarks: bool = False
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        yield "ADDED", self.pods[name]
        await asyncio.Event().wait()

    async def watch_events(self, namespace: str, involved: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """None recorded: the pod's status alone says when it runs."""
        for _ in ():
            yield "ADDED", {}


class EveryStagePasses:
    name = "scripted"

    async def open(self, job: JobContext) -> None:
        return None

    async def close(self) -> None:
        return None

    async def run_stage(self, job: JobContext, stage: str, *, deadline: float) -> StageEnd:
        return Exited(0)


async def run_with_pull_policies(policies: tuple[str, ...]) -> tuple[JobResult, bytes, PullingCluster]:
    cluster, out, trace = PullingCluster(), io.BytesIO(), Trace()
    trace.add_sink(StreamSink(out))
    request = JobRequest(
        job=JobSpec(name="job", script=("true",), image="team/app:1"),
        job_id="7",
        variables=(),
        project_dir="/builds/p",
        project_archive=b"",
        timeout=60,
    )
    result = await run_job(
        request=request,
        client=cast(KubeClient, cluster),
        settings=ExecutorSettings(pod=PodOptions(pull_policy=policies)),
        trace=trace,
        cancel=asyncio.Event(),
        strategy=EveryStagePasses(),
    )
    return result, out.getvalue(), cluster


async def test_a_pull_failure_moves_on_to_the_next_policy_in_a_new_pod() -> None:
    result, trace, cluster = await run_with_pull_policies(("Never", "IfNotPresent"))
    assert isinstance(result, Success), trace
    (first, never), (second, if_not_present) = cluster.created
    assert (never, if_not_present) == ("Never", "IfNotPresent") and first != second
    assert cluster.deleted == [first, second]
    assert (
        f'WARNING: Failed to start the pod with pull policy "Never": pod default/{first}: '
        f"ErrImageNeverPull: not present\n"
        f'Attempt #2: trying pull policy "IfNotPresent" for image "team/app:1"\n'
    ).encode() in trace, trace
    assert f"Running on {second} via".encode() in trace


async def test_the_last_pull_policys_failure_is_the_jobs() -> None:
    result, trace, cluster = await run_with_pull_policies(("Never",))
    assert isinstance(result, SystemFailure), trace
    assert [name for name, _ in cluster.created] == cluster.deleted
    assert len(cluster.deleted) == 1 and b"Attempt #" not in trace
    assert result == SystemFailure(f"pod default/{cluster.deleted[0]}: ErrImageNeverPull: not present")


def test_a_services_own_pull_policy_wins_over_the_configured_one_for_its_container_only() -> None:
    services = (
        ServiceContainer(image="postgres:16", aliases=("db",), pull_policy=("IfNotPresent", "Always")),
        ServiceContainer(image="redis:7", aliases=("cache",)),
    )
    found = containers(pod(PodOptions(pull_policy=("Never",)), services))
    assert {name: c["imagePullPolicy"] for name, c in found.items()} == {
        "build": "Never",
        "helper": "Never",
        "svc-0": "IfNotPresent",
        "svc-1": "Never",
    }


def test_a_service_cannot_pick_a_pull_policy_the_runner_does_not_allow() -> None:
    # A hostile job pulling a service image past the node's vetted copy is refused like its own image.
    with pytest.raises(OverwriteRefused) as caught:
        resolve(
            PodOptions(pull_policy=("Never",), allowed_pull_policies=("Never", "IfNotPresent")),
            namespace="ci",
            variables=(),
            image="ruby:3",
            default_image="alpine",
            service_pull_policies=[("redis:7", ("IfNotPresent",)), ("evil/db:1", ("Always",))],
        )
    assert str(caught.value) == (
        "failed to pull image 'evil/db:1': pull_policy ([Always]) defined in GitLab pipeline config "
        "is not one of the allowed_pull_policies ([Never IfNotPresent])"
    )
