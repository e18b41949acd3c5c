"""`kuberunner proxy`: users put the fault proxy in front of their own API server."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from .execution import BIN, Cluster
from .faults import server_port


def test_proxy_relays_kubectl_and_stops_on_ctrl_c(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "through-proxy.kubeconfig"
    proxy = subprocess.Popen(
        [
            str(BIN),
            "proxy",
            "--target",
            f"127.0.0.1:{server_port(cluster.kubeconfig)}",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--kubeconfig-out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not out.exists():
            assert proxy.poll() is None and time.monotonic() < deadline, proxy.stderr
            time.sleep(0.05)
        assert server_port(out) != server_port(cluster.kubeconfig)
        got = subprocess.run(
            [
                str(BIN.parent / "kubectl"),
                "--kubeconfig",
                str(out),
                "get",
                "namespace",
                "default",
                "-o",
                "name",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (got.returncode, got.stdout) == (0, "namespace/default\n"), got.stderr
        proxy.send_signal(signal.SIGINT)
        assert proxy.wait(timeout=30) == 0
    finally:
        proxy.kill()
        proxy.wait()
        assert proxy.stdout is not None and proxy.stderr is not None
        proxy.stdout.close()
        proxy.stderr.close()


def test_proxy_with_a_bad_target_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [str(BIN), "proxy", "--target", "nowhere"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "nowhere" in done.stderr, done.stderr
