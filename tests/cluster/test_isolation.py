"""What a hostile job cannot do from an embedded-cluster container: each test is one way out that
used to work (reading credentials and other pods' secrets, changing the host, escaping through
cgroups or hostPath), run through the real cluster: pods created through the API, real kubelet."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import socket
import ssl
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kuberunner.cluster.node import hidden, sandbox
from kuberunner.cluster.server import EmbeddedCluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def cluster() -> AsyncIterator[EmbeddedCluster]:
    """The in-process cluster as `kuberunner exec` starts it: state in a fresh system temp directory."""
    async with EmbeddedCluster() as running:
        yield running


@pytest.fixture
def outside_state_dir() -> Any:
    """A `--state-dir` outside every temp directory, so only the sandbox keeps it from jobs."""
    path = Path(tempfile.mkdtemp(prefix=".test-state-", dir=REPO))
    try:
        yield path / "state"
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    mounts = spec.pop("mounts", [])
    return {
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "c", "image": "busybox", "command": ["sh", "-c", script], "volumeMounts": mounts}
            ],
            **spec,
        },
    }


async def _until(cluster: EmbeddedCluster, name: str, done: Any, body: dict[str, Any] | None = None) -> None:
    _, sub = cluster.store.watch("pods", "default", since=cluster.store.resource_version)
    try:
        if body is not None:
            await cluster.store.create("pods", "default", body)
        while True:
            event = await asyncio.wait_for(sub.next(), 30)
            assert event is not None
            if event.object["metadata"]["name"] == name and done(event.object.get("status") or {}):
                return
    finally:
        cluster.store.unwatch(sub)


def _finished(status: dict[str, Any]) -> bool:
    return status.get("phase") in ("Succeeded", "Failed")


def _running(status: dict[str, Any]) -> bool:
    return any("running" in (s.get("state") or {}) for s in status.get("containerStatuses") or [])


async def run(cluster: EmbeddedCluster, name: str, script: str, **spec: Any) -> str:
    """Run a one-container pod to its end; its output."""
    await _until(cluster, name, _finished, _pod(name, script, **spec))
    return _output(cluster, name)


def _output(cluster: EmbeddedCluster, name: str) -> str:
    path = next(cluster.state_dir.glob(f"pods/default_{name}_*/c/0.log"))
    return "".join(line.split(" ", 3)[3] + "\n" for line in path.read_text().splitlines())


async def test_another_running_pods_secret_volume_is_out_of_reach(cluster: EmbeddedCluster) -> None:
    masked = "masked-variable-0c4f1e"
    secret = {"metadata": {"name": "job-a"}, "data": {"token": base64.b64encode(masked.encode()).decode()}}
    await cluster.store.create("secrets", "default", secret)
    victim = _pod(
        "victim",
        "sleep 3600",
        mounts=[{"name": "s", "mountPath": "/sec"}],
        volumes=[{"name": "s", "secret": {"secretName": "job-a"}}],
    )
    await _until(cluster, "victim", _running, victim)
    [on_host] = cluster.state_dir.glob("pods/default_victim_*/volumes/s/token")
    assert on_host.read_text() == masked

    out = await run(cluster, "thief", f"cat {on_host}; cat /proc/*/root{on_host}; echo end")

    assert masked not in out
    assert "end" in out.splitlines()


@pytest.mark.parametrize("where", ["in-process temp dir", "--state-dir"])
async def test_the_clusters_token_and_kubeconfig_are_out_of_reach(
    where: str, outside_state_dir: Path
) -> None:
    state_dir = None if where == "in-process temp dir" else outside_state_dir
    kubeconfig_out = outside_state_dir.parent / "kubeconfig" if state_dir else None
    async with EmbeddedCluster(state_dir=state_dir, kubeconfig_out=kubeconfig_out) as cluster:
        paths = [cluster.kubeconfig_path, *sorted((cluster.state_dir / "apiserver").iterdir())]
        assert cluster.token in cluster.kubeconfig_path.read_text()
        script = "".join(f"cat {p}; " for p in paths) + "echo end"

        out = await run(cluster, "thief", script)

    assert cluster.token not in out
    assert "BEGIN" not in out  # no TLS material either
    assert "end" in out.splitlines()


def _host_has_secrets() -> bool:
    return bool(os.listdir("/root")) and os.path.getsize("/etc/shadow") > 0


async def test_host_secrets_are_not_in_the_container(cluster: EmbeddedCluster) -> None:
    assert _host_has_secrets()

    out = await run(
        cluster, "thief", "exec 2>&1; cat /etc/shadow; echo ---; ls -A /root; echo ---; ls -A /tmp; echo end"
    )

    assert out == "cat: /etc/shadow: No such file or directory\n---\n---\nend\n"


async def test_the_host_name_cannot_be_changed(cluster: EmbeddedCluster) -> None:
    before = socket.gethostname()
    try:
        out = await run(cluster, "namer", "hostname; hostname changed-by-job 2>/dev/null; echo $?; hostname")

        assert out == "namer\n1\nnamer\n"
        assert socket.gethostname() == before
    finally:
        if socket.gethostname() != before:
            socket.sethostname(before)


RELEASE_AGENT_ESCAPE = """
kill -9 {pid} 2>/dev/null && echo killed
upper=$(sed -n 's/.*upperdir=\\([^,]*\\).*/\\1/p' /proc/self/mountinfo | head -1)
mkdir -p /cg && mount -t cgroup -o none,name=kr-escape cgroup /cg 2>/dev/null || {{ echo no-mount; exit 0; }}
mkdir -p /cg/x && printf '#!/bin/sh\\nkill -9 {pid}\\ntouch %s/{marker}\\n' "$upper" > /agent
chmod +x /agent
echo "$upper/agent" > /cg/release_agent && echo 1 > /cg/x/notify_on_release
sh -c 'echo 0 > /cg/x/cgroup.procs'
for i in $(seq 50); do [ -e /{marker} ] && break; sleep 0.1; done
rmdir /cg/x; echo > /cg/release_agent; umount /cg
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


async def test_a_host_process_cannot_be_killed(cluster: EmbeddedCluster) -> None:
    victim = await asyncio.create_subprocess_exec("sleep", "300")
    try:
        script = RELEASE_AGENT_ESCAPE.format(pid=victim.pid, marker="escaped")

        out = await run(cluster, "killer", script)

        assert "killed" not in out
        assert _alive(victim.pid)
        victim.kill()
    finally:
        with contextlib.suppress(ProcessLookupError):
            victim.kill()
        await victim.wait()


async def test_cgroup_files_are_not_writable(cluster: EmbeddedCluster) -> None:
    name = f"kr-isolation-{os.getpid()}"
    host = Path("/sys/fs/cgroup/memory") / name
    try:
        out = await run(
            cluster,
            "cg",
            f"mkdir /sys/fs/cgroup/memory/{name} 2>/dev/null && echo made; "
            "echo x 2>/dev/null > /sys/kernel/x || echo ro; "
            "ls /sys/fs/cgroup | wc -l",
        )
        assert out == "ro\n0\n"
        assert not host.exists()
    finally:
        if host.exists():
            host.rmdir()


async def test_a_hostpath_pod_is_refused(cluster: EmbeddedCluster) -> None:
    body = _pod("hp", "true", volumes=[{"name": "root", "hostPath": {"path": "/"}}])
    context = ssl.create_default_context(cadata=cluster.ca_pem.decode())
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {cluster.token}"}) as http,
        http.post(f"{cluster.url}/api/v1/namespaces/default/pods", json=body, ssl=context) as response,
    ):
        status = await response.json()
    assert (response.status, status["reason"]) == (403, "Forbidden")
    assert status["message"].startswith(
        'pods "hp" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "root")'
    )
    assert cluster.store.get("pods", "default", "hp") is None


async def test_the_containers_pid_1_has_only_a_runtimes_default_capabilities(
    cluster: EmbeddedCluster,
) -> None:
    out = await run(cluster, "caps", "grep CapEff /proc/1/status")

    effective = int(out.split()[1], 16)
    assert effective == sum(1 << cap for cap in sandbox.DEFAULT_CAPABILITIES)
    for cap in (21, 19, 12, 16):  # SYS_ADMIN, SYS_PTRACE, NET_ADMIN, SYS_MODULE
        assert not effective & (1 << cap)


async def test_root_in_the_container_is_an_unprivileged_host_uid(cluster: EmbeddedCluster) -> None:
    out = await run(cluster, "userns", "cat /proc/self/uid_map /proc/self/gid_map; id -u")

    uid_map, gid_map, uid = out.splitlines()
    assert uid_map.split() == gid_map.split() == ["0", str(hidden.UID_BASE), "65536"]
    assert uid == "0"


async def test_dev_is_minimal_and_proc_is_the_containers(cluster: EmbeddedCluster) -> None:
    out = await run(cluster, "dev", "ls /dev; echo /proc/[0-9]*; echo x > /dev/null && echo ok")

    *devices, processes, ok = out.splitlines()
    assert " ".join(devices) == "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero"
    assert (processes, ok) == ("/proc/1", "ok")  # the shell alone: nothing of the host's


def _modes(state_dir: Path) -> dict[str, str]:
    [pod_dir] = state_dir.glob("pods/default_files_*")
    paths = [
        state_dir,
        state_dir / "pods",
        pod_dir,
        pod_dir / "c",
        pod_dir / "c" / "0.log",
        pod_dir / "volumes",
        pod_dir / "volumes" / "s" / "token",
    ]
    return {
        str(path.relative_to(state_dir)).replace(pod_dir.name, "POD"): oct(stat.S_IMODE(path.stat().st_mode))
        for path in paths
    }


async def test_state_files_are_private_on_the_host(outside_state_dir: Path) -> None:
    secret = {"metadata": {"name": "s"}, "stringData": {"token": "t0ken"}}
    async with EmbeddedCluster(state_dir=outside_state_dir) as cluster:
        await cluster.store.create("secrets", "default", secret)
        await run(
            cluster,
            "files",
            "echo out > /logs/output.log; cat /sec/token",
            mounts=[{"name": "s", "mountPath": "/sec"}, {"name": "logs", "mountPath": "/logs"}],
            volumes=[{"name": "s", "secret": {"secretName": "s"}}, {"name": "logs", "emptyDir": {}}],
        )
        modes = _modes(outside_state_dir)
        assert _output(cluster, "files") == "t0ken\n"
    assert modes == {
        ".": "0o700",
        "pods": "0o700",
        "pods/POD": "0o700",
        "pods/POD/c": "0o700",
        "pods/POD/c/0.log": "0o600",
        "pods/POD/volumes": "0o700",
        "pods/POD/volumes/s/token": "0o600",
    }


async def test_memory_empty_dir_is_a_tmpfs_of_its_size_limit(cluster: EmbeddedCluster) -> None:
    out = await run(
        cluster,
        "mem",
        "dd if=/dev/zero of=/m/f bs=1024 count=2048 2>&1 | grep -o 'No space left on device'; "
        "stat -f -c %T /m; du -k /m/f | cut -f1",
        mounts=[{"name": "m", "mountPath": "/m"}],
        volumes=[{"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}],
    )
    assert out == "No space left on device\ntmpfs\n1024\n"
