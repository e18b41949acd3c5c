"""scripts/real-cluster on bad input: one line naming what is missing, within seconds, nothing started."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "real-cluster"


def up(tmp_path: Path, *prefix: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(
        [*prefix, str(SCRIPT), "up"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "REAL_CLUSTER_DIR": str(tmp_path / "rc"), **(env or {})},
    )
    assert time.monotonic() - started < 10
    assert done.stdout == ""
    return done


def test_without_root(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    done = up(tmp_path, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    assert (done.returncode, done.stderr) == (
        1,
        "real-cluster: needs root (it creates namespaces, mounts and cgroups); run it with sudo\n",
    )


def test_without_go(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(Path(sys.executable).resolve())
    for tool in ("ip", "unshare", "nsenter", "mount", "openssl", "gcc", "ldd"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    done = up(tmp_path, env={"PATH": str(bin_dir)})
    assert (done.returncode, done.stderr) == (
        1,
        "real-cluster: needs Go (`go` is not on PATH) to build Kubernetes v1.34.4\n",
    )
    assert not (tmp_path / "rc").exists()


def test_without_enough_disk(tmp_path: Path) -> None:
    """REAL_CLUSTER_DIR on a 1 MiB tmpfs, in a mount namespace of the test's own."""
    shell = 'mkdir -p "$1" && mount -t tmpfs -o size=1m t "$1" && exec "$2" up'
    done = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            shell,
            "sh",
            str(tmp_path / "rc"),
            str(SCRIPT),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "REAL_CLUSTER_DIR": str(tmp_path / "rc")},
    )
    assert done.returncode == 1
    assert done.stderr.startswith("real-cluster: needs 12 GiB free under ")
    assert done.stderr.count("\n") == 1


def test_usage() -> None:
    done = subprocess.run([str(SCRIPT), "sideways"], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (
        2,
        "usage: scripts/real-cluster up | down | status | runner-image [--write-lock]"
        " | exec -- CMD [ARG...]\n",
    )
