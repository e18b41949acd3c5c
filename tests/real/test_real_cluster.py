"""Behaviour only a real kube-apiserver, kubelet and containerd show (issue 11); the shared job-level
tests (tests/cli, tests/gitlab) also run here, against the same cluster, with the same assertions."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

from cli.execution import Cluster, Running, pipeline, run_exec

from .cluster import kubectl


def echo(command: str) -> bytes:
    return b"\x1b[32;1m$ " + command.encode() + b"\x1b[0;m\n"


def memory_config(tmp_path: Path, limit: str) -> Path:
    config = tmp_path.parent / f"{tmp_path.name}.toml"
    config.write_text(f'[[runners]]\nname = "oom"\n[runners.kubernetes]\nmemory_limit = "{limit}"\n')
    return config


def test_the_no_exec_account_really_cannot_exec(cluster_without_exec: Cluster) -> None:
    """The premise of the kubelet transport's tests here: the API server itself refuses pods/exec."""

    def can_i(subresource: str) -> str:
        args = ("auth", "can-i", "create", "pods", f"--subresource={subresource}")
        return kubectl(cluster_without_exec.kubeconfig, *args, check=False).strip()

    assert (can_i("exec"), can_i("attach")) == ("no", "yes")


def test_a_job_process_over_the_memory_limit_is_killed_alone(cluster: Cluster, tmp_path: Path) -> None:
    """cgroup v1 has no memory.oom.group: the kernel kills the hog, PID 1 (the shell) lives on, and
    the stage ends with 137 like any killed command: a script failure."""
    script = ["dd if=/dev/zero of=/dev/null bs=200M count=1", "echo never"]
    done = run_exec(cluster, tmp_path, pipeline(script=script), "-c", str(memory_config(tmp_path, "64Mi")))
    assert done.status == 1, done.trace[-2000:]
    assert done.trace.endswith(b"ERROR: Job failed: exit code 137\n"), done.trace[-2000:]


def test_pid1_over_the_memory_limit_is_a_system_failure_oomkilled(cluster: Cluster, tmp_path: Path) -> None:
    """When PID 1 (the shell reading stage lines) is the hog, the kernel kills it and the container
    ends OOMKilled: a system failure naming the reason. The job makes PID 1 the hog by writing a line
    into PID 1's own stdin (its container's; no other way in)."""
    hog = "echo 'v=$(head -c 200000000 /dev/zero | tr \"\\0\" a)' > /proc/1/fd/0; sleep 60"
    started = time.monotonic()
    script = ["echo started; sleep 2", hog]  # mid-stage, as test_sigkill_to_the_build_containers_pid1
    done = run_exec(cluster, tmp_path, pipeline(script=script), "-c", str(memory_config(tmp_path, "32Mi")))
    assert done.status == 3, done.trace[-2000:]
    assert re.search(rb"container build ended: exit code 137, reason OOMKilled\n\Z", done.trace), done.trace[
        -2000:
    ]
    assert time.monotonic() - started < 50


def _pod_and_secret(cluster: Cluster) -> tuple[str, str]:
    pods = json.loads(kubectl(cluster.kubeconfig, "get", "pods", "-o", "json"))["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    volumes = pods[0]["spec"]["volumes"]
    secret = next(v["secret"]["secretName"] for v in volumes if "secret" in v)
    return pods[0]["metadata"]["name"], secret


def test_the_scripts_secret_is_garbage_collected_with_the_pod(cluster: Cluster, tmp_path: Path) -> None:
    """A runner killed outright cannot delete its Secret: the pod's ownerReference makes the
    garbage collector do it once the pod is gone."""
    job = Running(cluster, tmp_path, pipeline(script=["echo started", "sleep 600"]))
    job.wait_for(b"started\n")
    pod, secret = _pod_and_secret(cluster)
    job.process.send_signal(signal.SIGKILL)
    job.finish(timeout=30)
    assert kubectl(cluster.kubeconfig, "get", "secret", secret, "-o", "name").strip() == f"secret/{secret}"
    kubectl(cluster.kubeconfig, "delete", "pod", pod, "--grace-period=0", "--force", "--wait=true")
    deadline = time.monotonic() + 60
    while kubectl(cluster.kubeconfig, "get", "secrets", "-o", "name").strip():
        assert time.monotonic() < deadline, "the Secret outlived its pod by a minute"
        time.sleep(0.2)


STEP_SCRIPT = b'Executing "step_script" stage of the job script\n'


def _time_to_partial(cluster: Cluster, tmp_path: Path, *args: str) -> float:
    """Seconds from the stage's header to `x` showing in the trace, for `printf x; sleep 5; echo y`."""
    command = "printf x; sleep 5; echo y"
    job = Running(cluster, tmp_path, pipeline(script=[command]), *args)
    job.wait_for(STEP_SCRIPT, within=90)
    started = time.monotonic()
    job.wait_for(echo(command) + b"x", within=30)
    waited = time.monotonic() - started
    done = job.finish(timeout=60)
    assert done.status == 0, done.trace[-2000:]
    assert echo(command) + b"xy\n" in done.trace
    return waited


def test_a_partial_line_is_live_with_the_file_transport(cluster: Cluster, tmp_path: Path) -> None:
    assert _time_to_partial(cluster, tmp_path) < 3


def test_a_partial_line_waits_for_its_newline_with_the_kubelet_transport(
    cluster_without_exec: Cluster, tmp_path: Path
) -> None:
    """containerd's CRI log holds a partial line until its newline (or 16 KiB), as the README says."""
    assert _time_to_partial(cluster_without_exec, tmp_path, "--log-transport", "kubelet") > 4


def test_the_node_is_a_real_kubelet(cluster: Cluster) -> None:
    """The tier is what it claims: a kubelet of the pinned version on containerd."""
    node = json.loads(kubectl(cluster.kubeconfig, "get", "nodes", "-o", "json"))["items"][0]
    info = node["status"]["nodeInfo"]
    assert re.fullmatch(r"v1\.34\.\d+", info["kubeletVersion"]), info
    assert info["containerRuntimeVersion"].startswith("containerd://"), info
