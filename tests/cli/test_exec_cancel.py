"""Ctrl-C and SIGTERM on `kuberunner exec` (issue 10, item 10): the first lets after_script run to
its end, a second stops at once; any cancel is exit 130 with the pod and its Secret deleted."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .execution import BIN, Cluster, Running, pipeline

CLEANUP = "for i in 1 2 3 4 5; do echo cleanup $i; sleep 0.5; done"


def objects(cluster: Cluster, kind: str) -> str:
    found = subprocess.run(
        [str(BIN.parent / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "get", kind, "-o", "name"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert found.returncode == 0, found.stderr
    return found.stdout


def gone(cluster: Cluster, kind: str, *, within: float = 10) -> bool:
    """Whether every object of `kind` is gone, soon: the kubelet removes a deleted pod once its
    containers stopped, and the Secret goes with it."""
    deadline = time.monotonic() + within
    while objects(cluster, kind) != "":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def processes(pattern: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_after_script_runs_to_its_end_after_a_cancel(cluster: Cluster, tmp_path: Path, signum: int) -> None:
    job = Running(cluster, tmp_path, pipeline(script=["echo started", "sleep 4270"], after_script=[CLEANUP]))
    job.wait_for(b"started\n")
    job.process.send_signal(signum)
    done = job.finish(timeout=60)
    assert done.status == 130, done.trace
    for i in range(1, 6):
        assert f"cleanup {i}\n".encode() in done.trace
    assert b"WARNING" not in done.trace
    assert done.trace.endswith(b"ERROR: Job failed: canceled\n")
    assert "Aborted" not in done.stderr and "Traceback" not in done.stderr
    assert processes("sleep 4270") == []
    assert gone(cluster, "pods")


def test_a_second_signal_stops_after_script_at_once(cluster: Cluster, tmp_path: Path) -> None:
    after = ["echo cleanup 1", "sleep 4271", "echo cleanup 2"]
    job = Running(cluster, tmp_path, pipeline(script=["echo started", "sleep 4272"], after_script=after))
    job.wait_for(b"started\n")
    job.process.send_signal(signal.SIGINT)
    job.wait_for(b"cleanup 1")
    job.process.send_signal(signal.SIGINT)
    done = job.finish(timeout=30)
    assert done.status == 130, done.trace
    assert b"cleanup 2" not in done.trace
    assert done.trace.count(b"Canceled again: stopping at once, deleting the pod\n") == 1
    assert done.trace.endswith(b"ERROR: Job failed: canceled\n")
    assert "Traceback" not in done.stderr
    assert processes("sleep 427[12]") == []
    assert gone(cluster, "pods")


def test_a_cancel_while_the_pod_starts_is_130_and_leaves_nothing(cluster: Cluster, tmp_path: Path) -> None:
    job = Running(cluster, tmp_path, pipeline(script=["echo should not run"]))
    job.wait_for(b"Using attach strategy")
    job.process.send_signal(signal.SIGINT)
    done = job.finish(timeout=30)
    assert done.status == 130, done.trace
    assert b"should not run\n" not in done.trace
    assert done.trace.endswith(b"ERROR: Job failed: canceled\n")
    assert done.stderr == ""
    assert gone(cluster, "pods")
    assert gone(cluster, "secrets")


def test_ctrl_c_while_the_embedded_cluster_starts_is_130(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text(pipeline(script=["echo should not run"]))
    stderr = tmp_path / "stderr"
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(BIN), "exec", "-f", str(tmp_path / ".gitlab-ci.yml")],
            stdout=subprocess.PIPE,
            stderr=err,
            env={**env, "HOME": str(tmp_path)},
        )
        deadline = time.monotonic() + 30
        while b"embedded single-node cluster" not in stderr.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, stderr.read_bytes()
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 130, out
    assert b"should not run\n" not in out
    text = stderr.read_text()
    assert "Aborted" not in text and "Traceback" not in text, text


def test_ctrl_c_while_the_command_still_loads_is_130(cluster: Cluster, tmp_path: Path) -> None:
    job = Running(cluster, tmp_path, pipeline(script=["echo should not run"]))
    maps = Path(f"/proc/{job.process.pid}/maps")
    deadline = time.monotonic() + 30
    # aiohttp's C parts map early in the import of the executor, well before any job can start.
    while "multidict" not in maps.read_text():
        assert job.process.poll() is None and time.monotonic() < deadline
    job.process.send_signal(signal.SIGINT)
    done = job.finish(timeout=30)
    assert done.status == 130, (done.stderr, done.trace)
    assert b"should not run\n" not in done.trace
    assert "Aborted" not in done.stderr and "Traceback" not in done.stderr
    assert gone(cluster, "pods")
