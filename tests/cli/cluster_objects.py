"""What the tests ask the cluster with kubectl: the objects a job or a runner left behind."""

from __future__ import annotations

import subprocess

from .execution import BIN, Cluster


def kubectl(cluster: Cluster, *args: str) -> str:
    """kubectl's stdout for `args` against the cluster; a failing kubectl fails the test."""
    found = subprocess.run(
        [str(BIN.parent / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return found.stdout


def object_names(cluster: Cluster, kinds: str, selector: str) -> list[str]:
    """`kind/name` of every object of `kinds` (e.g. "pods,secrets") matching the label selector."""
    return kubectl(cluster, "get", kinds, "-o", "name", "-l", selector).split()


def job_objects(cluster: Cluster, job_id: int, kinds: str = "pods,secrets") -> list[str]:
    """The job's pods and Secrets (or other `kinds`) still in the cluster."""
    return object_names(cluster, kinds, f"kuberunner.io/job={job_id}")
