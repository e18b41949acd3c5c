"""`[runners.kubernetes]` pod keys against a real API server, scheduler and kubelet (issue 15): what
the API server stores is what config.toml said, the kubelet honours it (the uid, the volumes), and a
pod no node can take fails the job after poll_timeout with the scheduler's reason."""

from __future__ import annotations

import json
import re
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli.execution import Cluster, Running, pipeline, run_exec
from cli.namespaces import create_namespace, delete_namespace

from .cluster import kubectl


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace of the test's own, deleted with everything in it afterwards."""
    name = create_namespace(cluster, "opts")
    yield name
    delete_namespace(cluster, name)


def config_file(tmp_path: Path, namespace: str, kubernetes: str) -> Path:
    config = tmp_path.parent / f"{tmp_path.name}.toml"
    config.write_text(
        f'[[runners]]\nname = "opts"\n[runners.kubernetes]\nnamespace = "{namespace}"\n'
        + textwrap.dedent(kubernetes)
    )
    return config


def apply(cluster: Cluster, manifest: dict[str, Any]) -> None:
    kubectl(cluster.kubeconfig, "apply", "-f", "-", stdin=json.dumps(manifest))


def test_the_stored_pod_has_every_option_and_the_kubelet_honours_them(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    node = json.loads(kubectl(cluster.kubeconfig, "get", "nodes", "-o", "json"))["items"][0]
    hostname = node["metadata"]["labels"]["kubernetes.io/hostname"]
    kubectl(cluster.kubeconfig, "-n", namespace, "create", "serviceaccount", "opts-builder")
    kubectl(
        cluster.kubeconfig,
        "-n",
        namespace,
        "create",
        "secret",
        "docker-registry",
        "opts-pull",
        "--docker-server=registry.example",
        "--docker-username=u",
        "--docker-password=p",
    )
    # No storage class on the test cluster: a PersistentVolume bound to the claim by name, on a
    # directory of this machine (the node's) that the job's uid may write.
    host_dir, pv_dir = tmp_path.parent / f"{tmp_path.name}-host", tmp_path.parent / f"{tmp_path.name}-pv"
    for directory in (host_dir, pv_dir):
        directory.mkdir()
        directory.chmod(0o777)
    (host_dir / "from-host").write_text("hello from the host\n")
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"{namespace}-pv"},
            "spec": {
                "capacity": {"storage": "16Mi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "claimRef": {"namespace": namespace, "name": "opts-cache"},
                "hostPath": {"path": str(pv_dir), "type": "Directory"},
            },
        },
    )
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "opts-cache", "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": f"{namespace}-pv",
                "resources": {"requests": {"storage": "16Mi"}},
            },
        },
    )
    # Cluster-wide objects of the test's own: a low PriorityClass, a RuntimeClass for containerd's runc.
    apply(
        cluster,
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": f"{namespace}-low"},
            "value": -10,
            "preemptionPolicy": "Never",
        },
    )
    apply(
        cluster,
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": f"{namespace}-runc"},
            "handler": "runc",
        },
    )
    config = config_file(
        tmp_path,
        namespace,
        f"""
        cpu_limit = "250m"
        cpu_request = "50m"
        memory_limit = "96Mi"
        memory_request = "32Mi"
        ephemeral_storage_limit = "64Mi"
        pod_cpu_limit = "500m"
        pod_memory_limit = "192Mi"
        node_selector = {{ "kubernetes.io/hostname" = "{hostname}" }}
        node_tolerations = {{ "example.com/ci=true" = "NoSchedule" }}
        service_account = "opts-builder"
        image_pull_secrets = ["opts-pull"]
        priority_class_name = "{namespace}-low"
        scheduler_name = "default-scheduler"
        runtime_class_name = "{namespace}-runc"
        [[runners.kubernetes.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms]]
          [[runners.kubernetes.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms.match_expressions]]
            key = "kubernetes.io/os"
            operator = "In"
            values = ["linux"]
        [[runners.kubernetes.affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution]]
          weight = 10
          [runners.kubernetes.affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution.pod_affinity_term]
            topology_key = "kubernetes.io/hostname"
            [runners.kubernetes.affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution.pod_affinity_term.label_selector]
              match_labels = {{ "heavy_job" = "yes" }}
        [[runners.kubernetes.pod_spec]]
          name = "hostname"
          patch_type = "json"
          patch = '[{{"op": "add", "path": "/hostname", "value": "opts-build"}}]'
        [runners.kubernetes.pod_security_context]
          run_as_non_root = true
          run_as_user = 1000
          run_as_group = 1000
          fs_group = 1000
        [[runners.kubernetes.volumes.pvc]]
          name = "opts-cache"
          mount_path = "/cache"
        [[runners.kubernetes.volumes.host_path]]
          name = "host-dir"
          mount_path = "/host"
          host_path = "{host_dir}"
        """,
    )
    script = [
        "id -u",
        "hostname",
        "echo written > /cache/by-job",
        "cat /host/from-host",
        "echo started",
        "sleep 600",
    ]
    job = Running(cluster, tmp_path, pipeline(script=script), "-c", str(config))
    try:
        job.wait_for(b"started\n", within=180)
        found = re.search(rb"Running on (\S+) via", job.trace())
        assert found is not None
        pod = json.loads(
            kubectl(cluster.kubeconfig, "-n", namespace, "get", "pod", found.group(1).decode(), "-o", "json")
        )
    finally:
        job.process.send_signal(signal.SIGINT)
        done = job.finish(timeout=120)
        for kind, name in (("pv", "pv"), ("priorityclass", "low"), ("runtimeclass", "runc")):
            kubectl(cluster.kubeconfig, "delete", kind, f"{namespace}-{name}", "--wait=false", check=False)
    spec = pod["spec"]
    build = next(c for c in spec["containers"] if c["name"] == "build")
    assert build["resources"] == {
        "limits": {"cpu": "250m", "memory": "96Mi", "ephemeral-storage": "64Mi"},
        # The API server defaults a request from its limit.
        "requests": {"cpu": "50m", "memory": "32Mi", "ephemeral-storage": "64Mi"},
    }
    assert spec["resources"]["limits"] == {"cpu": "500m", "memory": "192Mi"}
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": hostname}
    assert spec["nodeName"] == node["metadata"]["name"]
    assert {"key": "example.com/ci", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert spec["serviceAccountName"] == "opts-builder"
    assert spec["automountServiceAccountToken"] is False
    assert spec["imagePullSecrets"] == [{"name": "opts-pull"}]
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
    }
    assert {"name": "opts-cache", "persistentVolumeClaim": {"claimName": "opts-cache"}} in spec["volumes"]
    assert {"name": "host-dir", "hostPath": {"path": str(host_dir), "type": ""}} in spec["volumes"]
    assert {"name": "opts-cache", "mountPath": "/cache"} in build["volumeMounts"]
    assert pod["status"]["qosClass"] == "Burstable"
    assert (spec["priorityClassName"], spec["priority"]) == (f"{namespace}-low", -10)
    assert (spec["schedulerName"], spec["runtimeClassName"]) == ("default-scheduler", f"{namespace}-runc")
    assert spec["affinity"] == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
                ]
            }
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"heavy_job": "yes"}},
                    },
                }
            ]
        },
    }
    assert spec["hostname"] == "opts-build"
    assert done.status == 130, done.trace[-3000:]
    assert b"\n1000\n" in done.trace and b"\nopts-build\n" in done.trace, done.trace[-3000:]
    assert b"\nhello from the host\n" in done.trace, done.trace[-3000:]
    assert (pv_dir / "by-job").read_text() == "written\n"


def test_a_selector_no_node_matches_fails_after_poll_timeout_with_the_reason(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    config = config_file(
        tmp_path, namespace, 'poll_timeout = 8\nnode_selector = { "example.com/pool" = "nowhere" }\n'
    )
    started = time.monotonic()
    done = run_exec(cluster, tmp_path, pipeline(script=["echo never"]), "-c", str(config))
    took = time.monotonic() - started
    assert done.status == 3, done.trace[-3000:]
    assert 8 <= took < 90, took
    assert re.search(
        rb"ERROR: Job failed \(system failure\): timed out waiting for pod \S+ to start \(.*Unschedulable.*"
        rb"node\(s\) didn't match Pod's node affinity/selector.*\)\n\Z",
        done.trace,
    ), done.trace[-3000:]
    assert b"never" not in done.trace


def test_each_pull_policy_is_tried_in_turn_and_the_last_failure_fails_the_job(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    # The test cluster reaches no registry: an image it lacks fails under every policy, which shows
    # the fallback (Never: ErrImageNeverPull; IfNotPresent: a failed pull) without network access.
    config = config_file(tmp_path, namespace, 'pull_policy = ["never", "if-not-present"]\n')
    job = pipeline(image="localhost/kuberunner/absent:1", script=["echo never"])
    done = run_exec(cluster, tmp_path, job, "-c", str(config))
    assert done.status == 3, done.trace[-3000:]
    assert re.search(
        rb'WARNING: Failed to start the pod with pull policy "Never": pod \S+: ErrImageNeverPull: .*\n'
        rb'(.*\n)*Attempt #2: trying pull policy "IfNotPresent" for image "localhost/kuberunner/absent:1"\n',
        done.trace,
    ), done.trace[-3000:]
    assert re.search(
        rb"ERROR: Job failed \(system failure\): pod \S+: (ErrImagePull|ImagePullBackOff): .*\n\Z", done.trace
    ), done.trace[-3000:]
    assert done.trace.count(b"Attempt #") == 1
    assert b"never\n" not in done.trace
    pods = json.loads(kubectl(cluster.kubeconfig, "-n", namespace, "get", "pods", "-o", "json"))["items"]
    assert pods == []


def test_a_present_image_runs_under_pull_policy_never(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    config = config_file(tmp_path, namespace, 'pull_policy = ["never", "always"]\n')
    done = run_exec(cluster, tmp_path, pipeline(script=["echo ran-$((6 * 7))"]), "-c", str(config))
    assert done.status == 0, done.trace[-3000:]
    assert b"\nran-42\n" in done.trace
    assert b"Attempt #" not in done.trace and b"WARNING: Failed to start" not in done.trace
