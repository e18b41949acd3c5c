"""The embedded cluster, SIGKILLed and started again on its --state-dir, removes what its pods left
(issue 12): their secret volumes hold the job's scripts, variables included, in plain text."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from cli.execution import BIN, Cluster, Running

SECRET = "kuberunner-restart-secret-4370"


def holding(root: Path, needle: bytes) -> list[Path]:
    """Files under `root` whose content holds `needle`."""
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                found.append(path)
        except OSError:
            continue
    return found


def start(root: Path) -> subprocess.Popen[bytes]:
    kubeconfig = root / "kubeconfig"
    kubeconfig.unlink(missing_ok=True)
    log = (root / "cluster.log").open("ab")
    process = subprocess.Popen(
        [str(BIN), "cluster", "--kubeconfig-out", str(kubeconfig), "--state-dir", str(root / "state")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 30
    while not kubeconfig.exists():
        assert process.poll() is None and time.monotonic() < deadline, (root / "cluster.log").read_text()
        time.sleep(0.05)
    return process


def test_a_restarted_cluster_removes_the_directories_of_the_pods_it_no_longer_runs(tmp_path: Path) -> None:
    process = start(tmp_path)
    cluster = Cluster(tmp_path / "kubeconfig", tmp_path / "state", process)
    (tmp_path / "work").mkdir()
    pipeline = json.dumps(
        {"job": {"variables": {"TOKEN_VALUE": SECRET}, "script": ["echo started", "sleep 4370"]}}
    )
    job = Running(cluster, tmp_path / "work", pipeline)
    try:
        job.wait_for(b"started\n")
        process.kill()
        process.wait()
        assert holding(tmp_path / "state", SECRET.encode()), "the pod's scripts should be on disk"
    finally:
        job.process.kill()
        job.finish()
    process = start(tmp_path)
    try:
        assert holding(tmp_path / "state", SECRET.encode()) == []
        assert list((tmp_path / "state" / "pods").iterdir()) == []
        assert "left by a pod of an earlier run of this cluster" in (tmp_path / "cluster.log").read_text()
    finally:
        process.terminate()
        process.wait(timeout=60)
