"""A full logs volume (issue 10, item 5): the exit marker cannot be written, and the job must end at
once as a system failure naming the cause, not wait for its timeout."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .execution import BIN, Cluster, pipeline, run_exec, start_cluster


@pytest.fixture(scope="module")
def small_disk_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster whose pods' volumes all live on one 16 MiB tmpfs, as emptyDirs share a node's disk."""
    root = tmp_path_factory.mktemp("small-disk")
    state = root / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(state)], check=True)
    try:
        yield from start_cluster(root)
    finally:
        subprocess.run(["umount", "-l", str(state)], check=True)


def test_a_marker_lost_to_a_full_logs_volume_is_a_system_failure_within_seconds(
    small_disk_cluster: Cluster, tmp_path: Path
) -> None:
    # The log file's last page has room for a marker; 4 KiB more output takes it.
    script = ["cat /dev/zero > /kuberunner/logs/fill || true", "printf '%4096s' '' || true"]
    started = time.monotonic()
    done = run_exec(small_disk_cluster, tmp_path, pipeline(script=script), "--timeout", "300", timeout=60)
    took = time.monotonic() - started
    assert done.status == 3, done.trace[-2000:]
    assert done.trace.endswith(
        b"ERROR: Job failed (system failure): the job log could not be written (no space left on the "
        b"pod's logs volume?); the stage's exit code is unknown\n"
    ), done.trace[-2000:]
    assert took < 30, took
    pods = subprocess.run(
        [
            str(BIN.parent / "kubectl"),
            "--kubeconfig",
            str(small_disk_cluster.kubeconfig),
            "get",
            "pods",
            "-o",
            "name",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert pods.stdout == "", pods.stdout
