"""What a container sees: the overlay of `/`, volumes at their mountPath, secrets, env; and scale."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
from pathlib import Path

import pytest

from kuberunner.cluster.node import hidden
from kuberunner.cluster.node.runtime import ContainerConfig, Runtime
from kuberunner.cluster.node.volumes import DEFAULT_PATH
from tests.cluster.fixtures_kubelet import Node, container, node

__all__ = ["node"]


def _log(node: Node, pod: str, name: str = "c") -> bytes:
    path = next(node.state_dir.glob(f"pods/default_{pod}_*/{name}/0.log"))
    return b"".join(line.split(b" ", 3)[3] + b"\n" for line in path.read_bytes().splitlines())


def _host_has(path: str) -> bool:
    return Path(path).exists()


def _secret(name: str, data: dict[str, bytes]) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


async def test_overlay_keeps_the_host_untouched(node: Node) -> None:
    assert not _host_has("/etc/kuberunner-test")
    await node.create_pod(
        "ovl", [container("c", "echo hi > /etc/kuberunner-test && cat /etc/kuberunner-test")]
    )
    await node.wait_phase("ovl", ["Succeeded"])
    assert _log(node, "ovl") == b"hi\n"
    assert not _host_has("/etc/kuberunner-test")


async def test_volumes_env_and_working_dir(node: Node, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "from-host").write_text("host file\n")
    node.store.put("secrets", _secret("creds", {"token": b"s3cret", "other": b"x"}))
    node.store.put("configmaps", {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"k": "v\n"}})
    script = (
        "pwd; cat /sec/nested/tok; echo; stat -c %a /sec/nested/tok; ls /sec | wc -l; cat /cfg/k;"
        " cat /hp/from-host; echo $TOKEN $HOSTNAME $GREETING; echo data > /scratch/f && cat /scratch/f"
    )
    spec = container(
        "c",
        script,
        workingDir="/scratch",
        volumeMounts=[
            {"name": "s", "mountPath": "/sec"},
            {"name": "cm", "mountPath": "/cfg"},
            {"name": "hp", "mountPath": "/hp"},
            {"name": "e", "mountPath": "/scratch"},
        ],
        env=[
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "GREETING", "value": "hello-$(TOKEN)"},
        ],
    )
    await node.create_pod(
        "vols",
        [spec],
        volumes=[
            {
                "name": "s",
                "secret": {
                    "secretName": "creds",
                    "defaultMode": 0o400,
                    "items": [{"key": "token", "path": "nested/tok"}],
                },
            },
            {"name": "cm", "configMap": {"name": "cfg"}},
            {"name": "hp", "hostPath": {"path": str(host)}},
            {"name": "e", "emptyDir": {}},
        ],
    )
    pod = await node.wait_phase("vols", ["Succeeded", "Failed"])
    assert _log(node, "vols").decode().splitlines() == [
        "/scratch",
        "s3cret",
        "400",
        "1",
        "v",
        "host file",
        "s3cret vols hello-s3cret",
        "data",
    ]
    assert pod["status"]["phase"] == "Succeeded"
    assert sorted(os.listdir(host)) == ["from-host"]


async def test_missing_secret_keeps_the_pod_creating_until_it_exists(node: Node) -> None:
    await node.create_pod(
        "later",
        [container("c", "cat /s/a", volumeMounts=[{"name": "s", "mountPath": "/s"}])],
        volumes=[{"name": "s", "secret": {"secretName": "late"}}],
    )
    await node.store.wait_for(lambda: any(e["reason"] == "FailedMount" for e in node.store.events))
    assert node.status("later")["state"]["waiting"]["reason"] == "ContainerCreating"
    node.store.put("secrets", _secret("late", {"a": b"arrived"}))
    await node.wait_phase("later", ["Succeeded"])
    assert _log(node, "later") == b"arrived\n"


async def test_hundred_sleeping_pods_keep_the_kubelet_small(node: Node) -> None:
    before = _rss_mib()
    for index in range(100):
        await node.create_pod(f"p{index}", [container("c", "sleep 3600")])
    await node.store.wait_for(
        lambda: all(node.status(f"p{i}").get("state", {}).get("running") for i in range(100)), within=120
    )
    after = _rss_mib()
    print(f"kubelet process RSS: {before:.0f} MiB before, {after:.0f} MiB with 100 pods running")
    # What the kubelet adds for 100 pods; the server process's own total is measured in
    # tests/cli/test_cluster_scale.py, apart from everything pytest has loaded.
    assert after - before < 60


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_without_isolation_containers_are_process_groups(tmp_path: Path) -> None:
    runtime = Runtime(state_dir=tmp_path, cgroup_root=None, isolate=False)
    config = ContainerConfig(
        name="c",
        argv=["sh", "-c", "sleep 300 & echo $$; wait"],
        env={"PATH": DEFAULT_PATH},
        cwd=str(tmp_path),
        log_path=tmp_path / "c.log",
    )
    container = await runtime.start(config)
    while not _host_read(tmp_path / "c.log"):
        await container.log.wait_changed(1.0)
    assert _host_read(tmp_path / "c.log").endswith(f" stdout F {container.pid}\n".encode())
    container.signal(signal.SIGKILL)
    status = await container.exited
    assert (status.code, status.signal, status.reason) == (137, 9, "Error")
    for _ in range(100):  # the killed orphan is reaped by the host's init, not by us
        if not _group_members(container.pid):
            break
        await asyncio.sleep(0.05)
    assert _group_members(container.pid) == []


def _host_read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) == pgid:
                    members.append(int(entry))
    return members


async def test_a_refused_user_namespace_degrades_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A map past the 32-bit id space is refused by the kernel as an old kernel refuses any.
    monkeypatch.setattr(hidden, "UID_BASE", 2**32 - 100)
    runtime = Runtime(state_dir=tmp_path / "state", cgroup_root=None, isolate=True)
    outputs = []
    for index in range(2):
        config = ContainerConfig(
            name="c",
            argv=["sh", "-c", "cat /proc/self/uid_map; grep CapEff /proc/self/status"],
            env={"PATH": DEFAULT_PATH},
            cwd="/",
            log_path=tmp_path / f"{index}.log",
            hostname="p",
        )
        container = await runtime.start(config)
        assert (await container.exited).code == 0
        outputs.append([line.split(b" ", 3)[3] for line in _host_read(config.log_path).splitlines()])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("containers run as the host's root, without a user")
    for lines in outputs:
        assert lines[0].split() == [b"0", b"0", b"4294967295"]
        assert lines[1] == b"CapEff:\t00000000a80425fb"
