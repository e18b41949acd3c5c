"""EmbeddedCluster and `python -m kuberunner.cluster`: credentials, kubeconfig, cleanup, loopback only."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import sys
from pathlib import Path

import pytest

from kuberunner.cluster.contracts import ObjectStore
from kuberunner.cluster.server import EmbeddedCluster
from tests.cluster.api_helpers import FakeKubelet, Kubectl

ROOT = Path(__file__).resolve().parents[2]


async def test_lifecycle_writes_and_removes_what_it_created(tmp_path: Path) -> None:
    kubelets: list[FakeKubelet] = []
    seen_dirs: list[Path] = []

    def factory(store: ObjectStore, state_dir: Path) -> FakeKubelet:
        seen_dirs.append(state_dir)
        kubelets.append(FakeKubelet(store))
        return kubelets[-1]

    kubeconfig = tmp_path / "out" / "kubeconfig"
    async with EmbeddedCluster(kubeconfig_out=kubeconfig, kubelet_factory=factory) as cluster:
        assert cluster.url == f"https://127.0.0.1:{cluster.port}" and cluster.port > 0
        assert cluster.kubeconfig_path == kubeconfig
        text = kubeconfig.read_text()
        assert f'server: "{cluster.url}"' in text and cluster.token in text
        assert kubeconfig.stat().st_mode & 0o077 == 0
        assert seen_dirs == [cluster.state_dir]
        state_dir = cluster.state_dir
        # The certificate verifies for 127.0.0.1 with the CA written into the kubeconfig.
        context = ssl.create_default_context(cadata=cluster.ca_pem.decode())
        reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port, ssl=context)
        writer.write(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).endswith(b"\r\n\r\nok")
        writer.close()
        assert not list((state_dir / "apiserver").glob("*.key"))  # the key is never left on disk
    assert kubelets[0].shut_down
    assert not kubeconfig.exists()
    assert not state_dir.exists()


async def test_given_state_dir_is_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with EmbeddedCluster(state_dir=state, kubelet_factory=lambda s, d: FakeKubelet(s)) as cluster:
        assert cluster.kubeconfig_path == state / "apiserver" / "kubeconfig"
        assert cluster.kubeconfig_path.exists()
    assert state.is_dir() and not (state / "apiserver").exists()


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "10.1.2.3:80", "127.0.0.1", "127.0.0.1:99999"])
def test_listen_must_be_loopback_host_and_port(listen: str) -> None:
    with pytest.raises(ValueError):
        EmbeddedCluster(listen=listen)


async def test_cluster_command_runs_until_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kuberunner.cluster",
        "--kubeconfig-out",
        str(kubeconfig),
        "--state-dir",
        str(tmp_path / "state"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert first.startswith(b"kuberunner cluster: serving the Kubernetes API at https://127.0.0.1:")
        second = await asyncio.wait_for(proc.stdout.readline(), 5)
        assert second == f"kubeconfig: {kubeconfig}\n".encode()
        home = tmp_path / "home"
        home.mkdir()
        ran = await Kubectl(kubeconfig, home)("get", "namespace", "default", "-o", "name")
        assert (ran.rc, ran.out) == (0, "namespace/default\n")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 20)
    assert rc == 0
    assert not kubeconfig.exists()
