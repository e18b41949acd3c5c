"""The cluster access layer against the project's embedded cluster (real TLS, real processes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from kuberunner.cluster.server import EmbeddedCluster
from kuberunner.kube import config, streams
from kuberunner.kube.channels import STDERR, STDOUT
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import ExecStartError, NotFound
from kuberunner.kube.loglines import TimestampedLineSplitter

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster() -> AsyncIterator[KubeClient]:
    async with EmbeddedCluster() as embedded:
        cfg = await config.load_kubeconfig(embedded.kubeconfig_path)
        async with await KubeClient.open(cfg) as client:
            yield client


def shell_pod(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "build", "image": "alpine", "command": ["sh"], "stdin": True,
                 "stdinOnce": False, "tty": False}]}}


async def running(client: KubeClient, name: str, **labels: str) -> None:
    await client.create_pod(client.namespace, shell_pod(name, **labels))
    async with asyncio.timeout(30):
        async for _, pod in client.watch_pod(client.namespace, name, timeout_seconds=30):
            if pod.get("status", {}).get("phase") == "Running":
                return
    raise AssertionError(f"pod {name} never ran")


async def log_lines(client: KubeClient, name: str, want: int) -> list[bytes]:
    splitter = TimestampedLineSplitter()
    lines: list[bytes] = []
    async with asyncio.timeout(20):
        async for chunk in streams.follow_log(client, namespace=client.namespace, pod=name,
                                              container="build", timestamps=True):
            lines += [r.content for r in splitter.feed(chunk) if r.complete and r.timestamp]
            if len(lines) >= want:
                return lines
    return lines


async def test_rest_and_watch_round_trip(cluster: KubeClient) -> None:
    await running(cluster, "rest-1", job="42")
    assert [p["metadata"]["name"] for p in await cluster.list_pods(cluster.namespace, "job=42")] == ["rest-1"]
    pod = await cluster.get_pod(cluster.namespace, "rest-1")
    rv = pod["metadata"]["resourceVersion"]
    await cluster.delete_pod(cluster.namespace, "rest-1", grace_seconds=0)
    async with asyncio.timeout(20):
        kinds = [k async for k, _ in cluster.watch_pod(cluster.namespace, "rest-1", resource_version=rv)]
    assert kinds[-1] == "DELETED"
    with pytest.raises(NotFound):
        await cluster.get_pod(cluster.namespace, "rest-1")


async def exec_in(client: KubeClient, pod: str, *argv: str) -> tuple[bytes, bytes, int]:
    out, err = bytearray(), bytearray()
    async with await streams.open_exec(client, namespace=client.namespace, pod=pod, container="build",
                                       command=argv) as session:
        async for frame in session.output():
            (out if frame.channel == STDOUT else err).extend(frame.data)
            assert frame.channel in (STDOUT, STDERR)
        return bytes(out), bytes(err), await session.wait()


async def test_exec_exit_codes_streams_and_start_errors(cluster: KubeClient) -> None:
    await running(cluster, "exec-1")
    assert await exec_in(cluster, "exec-1", "sh", "-c", "printf out; printf err >&2; exit 3") == (
        b"out", b"err", 3)
    assert await exec_in(cluster, "exec-1", "true") == (b"", b"", 0)
    with pytest.raises(ExecStartError, match="not found"):
        await exec_in(cluster, "exec-1", "no-such-command-here")
    async with await streams.open_exec(cluster, namespace=cluster.namespace, pod="exec-1", container="build",
                                       command=["cat"], stdin=True) as session:
        assert session.protocol == "v5.channel.k8s.io"
        await session.write_stdin(b"through stdin\n")
        await session.close_stdin()
        got = b"".join([f.data async for f in session.output()])
        assert got == b"through stdin\n" and await session.wait() == 0
    await cluster.delete_pod(cluster.namespace, "exec-1", grace_seconds=0)


async def test_attach_writes_reach_pid1_and_stdin_stays_open(cluster: KubeClient) -> None:
    await running(cluster, "attach-1")
    for n in (1, 2):
        await streams.attach_write(cluster, namespace=cluster.namespace, pod="attach-1", container="build",
                                   data=f"echo line {n}\n".encode())
    assert await log_lines(cluster, "attach-1", 2) == [b"line 1", b"line 2"]
    await cluster.delete_pod(cluster.namespace, "attach-1", grace_seconds=0)
