"""Pods a SIGKILLed `kuberunner exec` left are deleted by the next `exec` on that cluster (issue 12)."""

from __future__ import annotations

from pathlib import Path

from kuberunner.executor.orphans import exec_owner

from .cluster_objects import object_names
from .execution import Cluster, Running, pipeline, run_exec


def exec_pods(cluster: Cluster, owner: str = "") -> list[str]:
    """The pods of the `exec` whose owner label is `owner` (empty: of every exec). Tests of other
    sessions may run their own execs on a shared cluster: each test looks at its own processes."""
    selector = f"kuberunner.io/owner={owner}" if owner else "kuberunner.io/owner"
    return [name.removeprefix("pod/") for name in object_names(cluster, "pods", selector)]


def test_the_next_exec_deletes_the_pod_of_a_killed_exec_and_spares_a_live_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "killed").mkdir()
    (tmp_path / "live").mkdir()
    (tmp_path / "next").mkdir()
    live = Running(cluster, tmp_path / "live", pipeline(script=["echo started", "sleep 4361"]))
    try:
        live.wait_for(b"started\n")
        spared = exec_pods(cluster, exec_owner(live.process.pid))
        assert len(spared) == 1
        killed = Running(cluster, tmp_path / "killed", pipeline(script=["echo started", "sleep 4360"]))
        killed.wait_for(b"started\n")
        orphan = exec_pods(cluster, exec_owner(killed.process.pid))  # its label names the live process
        assert len(orphan) == 1
        killed.process.kill()
        killed.finish()
        assert set(orphan) <= set(exec_pods(cluster))
        done = run_exec(cluster, tmp_path / "next", pipeline(script=["echo next"]))
        assert done.status == 0, done.stderr
        (name,) = orphan
        assert f"deleted pod default/{name}, left by a kuberunner exec that is gone" in done.stderr
        remaining = set(exec_pods(cluster))
        assert name not in remaining
        assert set(spared) <= remaining
    finally:
        live.process.terminate()
        live.finish()
