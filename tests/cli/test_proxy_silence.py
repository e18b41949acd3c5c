"""`kuberunner proxy`: the silent mode from the command line, and loopback only (issues 17 and 10)."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess

import pytest

from .execution import BIN, Cluster
from .faults import server_port


@pytest.mark.parametrize("listen", ["0.0.0.0:6443", "[::]:0", "10.1.2.3:0"])
def test_proxy_refuses_to_listen_beyond_loopback(listen: str) -> None:
    done = subprocess.run(
        [str(BIN), "proxy", "--target", "127.0.0.1:6443", "--listen", listen],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "only listens on loopback" in done.stderr, done.stderr
    assert listen in done.stderr and done.stdout == ""


def test_sighup_silences_open_connections(cluster: Cluster) -> None:
    proxy = subprocess.Popen(
        [
            str(BIN),
            "-v",  # its log lines say when the silence happened
            "proxy",
            "--target",
            f"127.0.0.1:{server_port(cluster.kubeconfig)}",
            "--silence-after",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stdout is not None
        ready = proxy.stdout.readline()
        assert ready.startswith("kuberunner proxy: 127.0.0.1:"), ready
        port = int(ready.split()[2].rsplit(":", 1)[1])
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        request = b"GET /version HTTP/1.1\r\nHost: kubernetes\r\n\r\n"
        with tls.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as conn:
            conn.sendall(request)
            assert conn.recv(65536).startswith(b"HTTP/1.1 ")  # relayed both ways
            proxy.send_signal(signal.SIGHUP)
            assert proxy.stderr is not None
            while "silenced" not in (line := proxy.stderr.readline()):
                assert line, "the proxy ended"
            assert "silenced 1 connection" in line
            conn.sendall(request)
            conn.settimeout(0.5)
            with pytest.raises(TimeoutError):
                conn.recv(1)  # the request and any answer are swallowed, and nothing is closed
            proxy.send_signal(signal.SIGINT)
            assert proxy.wait(timeout=30) == 0
        summary = proxy.stdout.read()
        assert "silenced=1, silence_rounds=1" in summary, summary
    finally:
        proxy.kill()
        proxy.wait()
        for pipe in (proxy.stdout, proxy.stderr):
            if pipe is not None:
                pipe.close()
