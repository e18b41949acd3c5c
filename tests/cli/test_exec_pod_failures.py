"""A pod that dies under a running stage is a system failure naming the cause, within 5 s (issue 4)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .execution import BIN, Cluster, Running, pipeline

LONG_STAGE = ["echo started", "sleep 4300"]


def pod_name(job: Running) -> str:
    job.wait_for(b"started\n")
    found = re.search(rb"Running on (\S+) via", job.trace())
    assert found is not None
    return found.group(1).decode()


def build_pid1(pod: str) -> int:
    """The host PID of the build container's PID 1: NSpid ends in 1, HOSTNAME is the pod's name."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
        if len(nspid) > 1 and nspid[-1] == "1" and f"HOSTNAME={pod}".encode() in environ:
            return int(entry)
    raise AssertionError(f"no PID 1 of pod {pod}")


def finished_within(job: Running, seconds: float) -> tuple[int, bytes]:
    started = time.monotonic()
    done = job.finish(timeout=60)
    assert time.monotonic() - started < seconds, f"took {time.monotonic() - started:.1f}s"
    return done.status, done.trace


def test_deleting_the_pod_mid_stage(cluster: Cluster, tmp_path: Path) -> None:
    job = Running(cluster, tmp_path, pipeline(script=LONG_STAGE))
    pod = pod_name(job)
    subprocess.run(
        [
            str(BIN.parent / "kubectl"),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "delete",
            "pod",
            pod,
            "--wait=false",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    status, trace = finished_within(job, 5)
    assert status == 3
    assert re.search(rb"ERROR: Job failed \(system failure\): pod default/\S+ (was|is being) deleted", trace)


def test_sigkill_to_the_build_containers_pid1(cluster: Cluster, tmp_path: Path) -> None:
    job = Running(cluster, tmp_path, pipeline(script=LONG_STAGE))
    os.kill(build_pid1(pod_name(job)), signal.SIGKILL)
    status, trace = finished_within(job, 5)
    assert status == 3
    assert b"container build ended: exit code 137" in trace, trace[-1000:]


@pytest.mark.embedded_only(
    "the job runs the host's python3; tests/real covers both OOM forms on a real kubelet"
)
def test_memory_limit_overrun_is_oomkilled(cluster: Cluster, tmp_path: Path) -> None:
    config = tmp_path.parent / f"{tmp_path.name}.toml"
    config.write_text('[[runners]]\nname = "oom"\n[runners.kubernetes]\nmemory_limit = "64Mi"\n')
    script = ["echo started", "python3 -c 'b = bytearray(300 * 2**20); import time; time.sleep(60)'"]
    job = Running(cluster, tmp_path, pipeline(script=script), "-c", str(config))
    pod_name(job)
    status, trace = finished_within(job, 15)
    assert status == 3, trace[-1000:]
    assert b"exit code 137, reason OOMKilled" in trace, trace[-1000:]
