"""Pods a SIGKILLed `kuberunner exec` left are deleted by the next `exec` on that cluster (issue 12)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .execution import BIN, Cluster, Running, pipeline, run_exec


def exec_pods(cluster: Cluster) -> list[str]:
    found = subprocess.run(
        [
            str(BIN.parent / "kubectl"),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "get",
            "pods",
            "-o",
            "name",
            "-l",
            "kuberunner.io/owner",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [name.removeprefix("pod/") for name in found.stdout.split()]


def test_the_next_exec_deletes_the_pod_of_a_killed_exec_and_spares_a_live_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "killed").mkdir()
    (tmp_path / "live").mkdir()
    (tmp_path / "next").mkdir()
    before = set(exec_pods(cluster))
    live = Running(cluster, tmp_path / "live", pipeline(script=["echo started", "sleep 4361"]))
    try:
        live.wait_for(b"started\n")
        spared = set(exec_pods(cluster)) - before
        assert len(spared) == 1
        killed = Running(cluster, tmp_path / "killed", pipeline(script=["echo started", "sleep 4360"]))
        killed.wait_for(b"started\n")
        orphan = set(exec_pods(cluster)) - before - spared
        assert len(orphan) == 1
        killed.process.kill()
        killed.finish()
        assert orphan <= set(exec_pods(cluster))
        done = run_exec(cluster, tmp_path / "next", pipeline(script=["echo next"]))
        assert done.status == 0, done.stderr
        (name,) = orphan
        assert f"deleted pod default/{name}, left by a kuberunner exec that is gone" in done.stderr
        remaining = set(exec_pods(cluster))
        assert name not in remaining
        assert spared <= remaining
    finally:
        live.process.terminate()
        live.finish()
