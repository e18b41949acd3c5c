"""config.toml's `[runners.kubernetes]` pod keys reach the pod the API server stores, and a job's
KUBERNETES_* variables change only what config.toml allows (issue 15), on both clusters."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from real.cluster import kubectl

from .execution import Cluster, Done, Running, pipeline, run_exec
from .namespaces import create_namespace, delete_namespace

WAITING = ["echo started", "sleep 600"]


def config_file(tmp_path: Path, kubernetes: str) -> Path:
    config = tmp_path.parent / f"{tmp_path.name}.toml"
    config.write_text('[[runners]]\nname = "opts"\n[runners.kubernetes]\n' + textwrap.dedent(kubernetes))
    return config


def node_name(cluster: Cluster) -> str:
    nodes = json.loads(kubectl(cluster.kubeconfig, "get", "nodes", "-o", "json"))["items"]
    return str(nodes[0]["metadata"]["labels"]["kubernetes.io/hostname"])


def stored_pod(cluster: Cluster, job: Running) -> dict[str, Any]:
    """The job's pod as the API server stored it, read while the job runs."""
    job.wait_for(b"started\n")
    found = re.search(rb"Running on (\S+) via", job.trace())
    assert found is not None
    pod: dict[str, Any] = json.loads(
        kubectl(cluster.kubeconfig, "get", "pod", found.group(1).decode(), "-o", "json")
    )
    return pod


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in pod["spec"]["containers"] if c["name"] == name)
    return found


def test_pod_keys_reach_the_stored_pod(cluster: Cluster, tmp_path: Path) -> None:
    configmap = f"opts-{secrets.token_hex(4)}"
    kubectl(cluster.kubeconfig, "create", "configmap", configmap, "--from-literal=greeting=hello")
    config = config_file(
        tmp_path,
        f"""
        cpu_limit = "500m"
        cpu_request = "100m"
        memory_limit = "256Mi"
        memory_request = "64Mi"
        ephemeral_storage_request = "10Mi"
        pod_cpu_limit = "2"
        pod_memory_limit = "1Gi"
        node_selector = {{ "kubernetes.io/hostname" = "{node_name(cluster)}" }}
        node_tolerations = {{ "example.com/dedicated=ci" = "NoSchedule", "example.com/any" = "" }}
        image_pull_secrets = ["opts-registry"]
        pull_policy = ["if-not-present", "always"]
        pod_labels = {{ team = "ci", "kuberunner.io/runner" = "spoofed" }}
        pod_annotations = {{ "example.com/note" = "from config" }}
        allow_privilege_escalation = false
        dns_policy = "cluster-first"
        [runners.kubernetes.dns_config]
          options = [{{ name = "ndots", value = "2" }}]
        [runners.kubernetes.pod_security_context]
          run_as_non_root = true
          run_as_user = 1000
          run_as_group = 1000
        [runners.kubernetes.build_container_security_context]
          read_only_root_filesystem = false
          [runners.kubernetes.build_container_security_context.capabilities]
            drop = ["ALL"]
        [[runners.kubernetes.host_aliases]]
          ip = "10.1.2.3"
          hostnames = ["registry.example"]
        [[runners.kubernetes.volumes.empty_dir]]
          name = "scratch"
          mount_path = "/scratch"
          medium = "Memory"
        [[runners.kubernetes.volumes.config_map]]
          name = "{configmap}"
          mount_path = "/etc/greeting"
          read_only = true
        [[runners.kubernetes.pod_spec]]
          name = "env"
          patch_type = "strategic"
          patch = '{{"containers": [{{"name": "build", "env": [{{"name": "PATCHED", "value": "yes"}}]}}]}}'
        """,
    )
    script = ["cat /etc/greeting/greeting; echo", 'echo "patched=$PATCHED"', "touch /scratch/x", *WAITING]
    job = Running(cluster, tmp_path, pipeline(script=script), "-c", str(config))
    try:
        pod = stored_pod(cluster, job)
    finally:
        job.process.send_signal(signal.SIGINT)
        done = job.finish(timeout=120)
        kubectl(cluster.kubeconfig, "delete", "configmap", configmap)
    spec, build = pod["spec"], container(pod, "build")
    assert build["resources"] == {
        "limits": {"cpu": "500m", "memory": "256Mi"},
        "requests": {"cpu": "100m", "memory": "64Mi", "ephemeral-storage": "10Mi"},
    }
    assert spec["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": node_name(cluster)}
    assert {
        "key": "example.com/dedicated",
        "operator": "Equal",
        "value": "ci",
        "effect": "NoSchedule",
    } in spec["tolerations"]
    assert {"key": "example.com/any", "operator": "Exists"} in spec["tolerations"]
    assert spec["imagePullSecrets"] == [{"name": "opts-registry"}]
    assert build["imagePullPolicy"] == "IfNotPresent"
    assert pod["metadata"]["labels"]["team"] == "ci"
    assert pod["metadata"]["labels"]["kuberunner.io/runner"] == "opts"  # the runner's own label wins
    assert pod["metadata"]["annotations"]["example.com/note"] == "from config"
    assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000}
    assert build["securityContext"] == {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["dnsConfig"] == {"options": [{"name": "ndots", "value": "2"}]}
    assert {"ip": "10.1.2.3", "hostnames": ["registry.example"]} in spec["hostAliases"]
    assert {"name": "scratch", "emptyDir": {"medium": "Memory"}} in spec["volumes"]
    assert {"name": "scratch", "mountPath": "/scratch"} in build["volumeMounts"]
    assert {"name": "PATCHED", "value": "yes"} in build["env"]
    assert done.status == 130, done.trace[-2000:]
    assert b"\nhello\n" in done.trace and b"\npatched=yes\n" in done.trace, done.trace[-3000:]


def assert_refused_before_the_script(done: Done, reason: str, *, never: bytes) -> None:
    """The job ended as a system failure for `reason` before its script (which prints `never`) ran."""
    assert done.status == 3, done.trace[-2000:]
    assert f"ERROR: Preparation failed: {reason}\n".encode() in done.trace, done.trace
    assert done.trace.endswith(f"ERROR: Job failed (system failure): {reason}\n".encode()), done.trace
    assert never not in done.trace


def test_a_job_variable_cannot_ask_for_more_cpu_than_allowed(cluster: Cluster, tmp_path: Path) -> None:
    config = config_file(tmp_path, 'cpu_limit = "200m"\ncpu_limit_overwrite_max_allowed = "400m"\n')
    job = pipeline(script=["echo never"], variables={"KUBERNETES_CPU_LIMIT": "600m"})
    done = run_exec(cluster, tmp_path, job, "-c", str(config))
    reason = (
        'invalid build limits specified: the resource "CPULimit" requested "600m" is higher than limit '
        'allowed "400m"'
    )
    assert_refused_before_the_script(done, reason, never=b"never")


def test_job_variables_change_only_what_config_allows(cluster: Cluster, tmp_path: Path) -> None:
    """Within the bounds the values apply and are traced; with no bound in config.toml (node selector,
    service account, the memory limit) the variables are ignored, as in GitLab Runner."""
    config = config_file(
        tmp_path,
        """
        cpu_limit = "200m"
        cpu_limit_overwrite_max_allowed = "400m"
        memory_limit = "128Mi"
        pod_annotations_overwrite_allowed = "^example\\\\.com/"
        """,
    )
    variables = {
        "KUBERNETES_CPU_LIMIT": "300m",
        "KUBERNETES_MEMORY_LIMIT": "64Gi",
        "KUBERNETES_NODE_SELECTOR_X": "kubernetes.io/hostname=elsewhere",
        "KUBERNETES_SERVICE_ACCOUNT_OVERWRITE": "cluster-admin",
        "KUBERNETES_POD_ANNOTATIONS_1": "example.com/owner=me",
    }
    job = Running(cluster, tmp_path, pipeline(script=WAITING, variables=variables), "-c", str(config))
    try:
        pod = stored_pod(cluster, job)
    finally:
        job.process.send_signal(signal.SIGINT)
        done = job.finish(timeout=120)
    build = container(pod, "build")
    assert build["resources"]["limits"] == {"cpu": "300m", "memory": "128Mi"}
    assert "nodeSelector" not in pod["spec"]
    assert pod["spec"]["serviceAccountName"] == "default"
    assert pod["metadata"]["annotations"]["example.com/owner"] == "me"
    assert b'"CPULimit" overwritten with "300m"\n' in done.trace
    assert b'"PodAnnotations" "example.com/owner" overwritten with "me"\n' in done.trace


def test_an_annotation_outside_the_allowed_pattern_refuses_the_job(cluster: Cluster, tmp_path: Path) -> None:
    config = config_file(tmp_path, 'pod_annotations_overwrite_allowed = "^example\\\\.com/"\n')
    job = pipeline(script=["echo never"], variables={"KUBERNETES_POD_ANNOTATIONS_1": "evil.io/x=1"})
    done = run_exec(cluster, tmp_path, job, "-c", str(config))
    assert done.status == 3
    assert done.trace.endswith(
        b'ERROR: Job failed (system failure): provided value "evil.io/x=1" does not match "^example\\.com/"\n'
    ), done.trace


def test_an_image_outside_allowed_images_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    config = config_file(tmp_path, 'allowed_images = ["registry.example/*"]\n')
    done = run_exec(
        cluster, tmp_path, pipeline(image="evil/miner:1", script=["echo never"]), "-c", str(config)
    )
    assert done.status == 3
    assert done.trace.endswith(
        b'ERROR: Job failed (system failure): the "evil/miner:1" image is not present on list of allowed '
        b"images: registry.example/*\n"
    ), done.trace


def test_a_json_patch_that_does_not_apply_fails_the_job(cluster: Cluster, tmp_path: Path) -> None:
    config = config_file(
        tmp_path,
        """
        [[runners.kubernetes.pod_spec]]
          name = "bad"
          patch_type = "json"
          patch = '[{"op": "replace", "path": "/nosuch/0", "value": 1}]'
        """,
    )
    done = run_exec(cluster, tmp_path, pipeline(script=["echo never"]), "-c", str(config))
    assert done.status == 3
    assert re.search(
        rb"ERROR: Job failed \(system failure\): pod_spec patch 'bad' does not apply: .+\n\Z", done.trace
    ), done.trace


@pytest.fixture
def baseline_namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace enforcing PodSecurity "baseline", as a production cluster's CI namespace does."""
    name = create_namespace(cluster, "opts-baseline", "pod-security.kubernetes.io/enforce=baseline")
    yield name
    delete_namespace(cluster, name)


def test_privileged_is_refused_by_pod_security(
    cluster: Cluster, baseline_namespace: str, tmp_path: Path
) -> None:
    """The embedded cluster cannot sandbox a privileged container: it refuses it in every namespace,
    as a real cluster enforcing PodSecurity "baseline" does in this one."""
    config = config_file(tmp_path, f'namespace = "{baseline_namespace}"\nprivileged = true\n')
    done = run_exec(cluster, tmp_path, pipeline(script=["echo never"]), "-c", str(config))
    assert done.status == 3, done.trace[-2000:]
    assert re.search(
        rb'ERROR: Job failed \(system failure\): .*violates PodSecurity "baseline:latest": privileged '
        rb'\(container "build" must not set securityContext.privileged=true\)\n\Z',
        done.trace,
    ), done.trace[-2000:]


def test_host_path_and_privileged_are_named_together(
    cluster: Cluster, baseline_namespace: str, tmp_path: Path
) -> None:
    config = config_file(
        tmp_path,
        f"""
        namespace = "{baseline_namespace}"
        [runners.kubernetes.service_container_security_context]
          privileged = true
        [[runners.kubernetes.volumes.host_path]]
          name = "root"
          mount_path = "/host"
          host_path = "/"
        """,
    )
    job = pipeline(script=["echo never"], services=[{"name": "svc-image:1", "alias": "svc"}])
    done = run_exec(cluster, tmp_path, job, "-c", str(config))
    assert done.status == 3, done.trace[-2000:]
    assert re.search(
        rb'violates PodSecurity "baseline:latest": hostPath volumes \(volume "root"\), privileged '
        rb'\(container "svc-0" must not set securityContext.privileged=true\)\n\Z',
        done.trace,
    ), done.trace[-2000:]


def test_a_job_moves_only_to_a_namespace_config_allows(cluster: Cluster, tmp_path: Path) -> None:
    allowed = create_namespace(cluster, "opts-ns")
    config = config_file(tmp_path, 'namespace_overwrite_allowed = "^opts-ns-"\n')
    try:
        moved = pipeline(script=["echo moved"], variables={"KUBERNETES_NAMESPACE_OVERWRITE": allowed})
        ok_dir = tmp_path / "ok"
        ok_dir.mkdir()
        done = run_exec(cluster, ok_dir, moved, "-c", str(config))
        refused_dir = tmp_path / "refused"
        refused_dir.mkdir()
        escape = pipeline(script=["echo never"], variables={"KUBERNETES_NAMESPACE_OVERWRITE": "kube-system"})
        refused = run_exec(cluster, refused_dir, escape, "-c", str(config))
    finally:
        delete_namespace(cluster, allowed)
    assert done.status == 0, done.trace[-2000:]
    assert (
        f'"Namespace" overwritten with "{allowed}"\nUsing Kubernetes namespace: {allowed}\n'.encode()
        in done.trace
    )
    assert refused.status == 3
    assert refused.trace.endswith(
        b'ERROR: Job failed (system failure): provided value "kube-system" does not match "^opts-ns-"\n'
    ), refused.trace


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ('priority_class_name = "opts-nowhere"', "no PriorityClass with name opts-nowhere was found"),
        ('runtime_class_name = "opts-nowhere"', 'pod rejected: RuntimeClass "opts-nowhere" not found'),
    ],
)
def test_a_class_the_cluster_lacks_refuses_the_pod(
    cluster: Cluster, tmp_path: Path, key: str, reason: str
) -> None:
    done = run_exec(cluster, tmp_path, pipeline(script=["echo never"]), "-c", str(config_file(tmp_path, key)))
    assert done.status == 3
    assert re.search(
        rb'ERROR: Job failed \(system failure\): Kubernetes API: 403 Forbidden: pods "opts-job-[0-9a-f]+" is '
        rb"forbidden: " + re.escape(reason.encode()) + rb"\n\Z",
        done.trace,
    ), done.trace[-2000:]


def test_a_built_in_priority_class_gives_its_priority(cluster: Cluster, tmp_path: Path) -> None:
    config = config_file(tmp_path, 'priority_class_name = "system-cluster-critical"\n')
    job = Running(cluster, tmp_path, pipeline(script=WAITING), "-c", str(config))
    try:
        pod = stored_pod(cluster, job)
    finally:
        job.process.send_signal(signal.SIGINT)
        job.finish(timeout=120)
    spec = pod["spec"]
    assert (spec["priorityClassName"], spec["priority"]) == ("system-cluster-critical", 2000000000)
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"


def job_image() -> str:
    """An image the cluster has: the real one pulls nothing (no registry access)."""
    return os.environ.get("KUBERNETES_IMAGE", "alpine:3.19")


def test_a_jobs_allowed_image_pull_policy_is_the_pods(cluster: Cluster, tmp_path: Path) -> None:
    config = config_file(tmp_path, 'pull_policy = "always"\nallowed_pull_policies = ["always", "never"]\n')
    image = {"name": job_image(), "pull_policy": ["never"]}
    job = Running(cluster, tmp_path, pipeline(image=image, script=WAITING), "-c", str(config))
    pod = stored_pod(cluster, job)
    job.process.send_signal(signal.SIGINT)
    done = job.finish()
    assert {c["imagePullPolicy"] for c in pod["spec"]["containers"]} == {"Never"}
    assert done.status == 130, done.trace[-2000:]
    assert b"image:pull_policy" not in done.trace  # no "not supported" warning any more


def test_a_job_cannot_choose_a_pull_policy_config_does_not_allow(cluster: Cluster, tmp_path: Path) -> None:
    config = config_file(tmp_path, 'pull_policy = ["never", "if-not-present"]\n')
    image = {"name": "evil/miner:1", "pull_policy": "always"}
    done = run_exec(cluster, tmp_path, pipeline(image=image, script=["echo never"]), "-c", str(config))
    reason = (
        "failed to pull image 'evil/miner:1': pull_policy ([Always]) defined in GitLab pipeline config is "
        "not one of the allowed_pull_policies ([Never IfNotPresent])"
    )
    assert_refused_before_the_script(done, reason, never=b"never\n")


def test_a_bad_image_pull_policy_names_the_file_and_line(cluster: Cluster, tmp_path: Path) -> None:
    done = run_exec(cluster, tmp_path, "job:\n  image: {name: x, pull_policy: sometimes}\n  script: [x]\n")
    assert done.status == 2, done.stderr
    assert re.fullmatch(
        r"kuberunner: error: \S*\.gitlab-ci\.yml:2: job 'job': 'image:pull_policy' must be always, "
        r"if-not-present or never \(or a list of them\), not .*\n",
        done.stderr,
    ), done.stderr
