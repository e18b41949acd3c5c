"""The embedded cluster carries 100 sleeping pods with a small server process (issue 2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .execution import BIN, Cluster


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.embedded_only("measures the embedded cluster's own server process")
def test_hundred_sleeping_pods_keep_the_server_under_150_mb(cluster: Cluster, tmp_path: Path) -> None:
    kubectl = [str(BIN.parent / "kubectl"), "--kubeconfig", str(cluster.kubeconfig)]
    pods = {
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"sleeper-{i}", "labels": {"scale": "100"}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}],
                },
            }
            for i in range(100)
        ],
    }
    manifest = tmp_path / "pods.yaml"
    manifest.write_text("\n---\n".join(json.dumps(pod) for pod in pods["items"]))
    try:
        applied = subprocess.run(
            [*kubectl, "apply", "-f", str(manifest)], capture_output=True, text=True, timeout=120
        )
        assert applied.returncode == 0, applied.stderr
        subprocess.run(
            [*kubectl, "wait", "--for=condition=Ready", "pod", "-l", "scale=100", "--timeout=120s"],
            check=True,
            capture_output=True,
            timeout=180,
        )
        running = subprocess.run(
            [*kubectl, "get", "pods", "-l", "scale=100", "-o", "json"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        phases = [p["status"]["phase"] for p in json.loads(running.stdout)["items"]]
        assert phases == ["Running"] * 100
        rss = rss_mib(cluster.process.pid)
        print(f"embedded cluster server RSS with 100 running pods: {rss:.0f} MiB")
        assert rss < 150
    finally:
        subprocess.run(
            [*kubectl, "delete", "pods", "-l", "scale=100", "--wait=true", "--timeout=120s"],
            capture_output=True,
            timeout=180,
        )
