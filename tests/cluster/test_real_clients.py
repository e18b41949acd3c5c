"""Real clients against the embedded cluster and its real kubelet: kubectl, kubernetes, kubernetes_asyncio."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as aio_client
from kubernetes_asyncio import config as aio_config
from kubernetes_asyncio.stream import WsApiClient

from kuberunner.cluster.server import EmbeddedCluster

KUBECTL = str(Path(sys.executable).parent / "kubectl")
TIMESTAMP = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


@pytest.fixture
async def real_cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(state_dir=tmp_path / "state") as cluster:
        yield cluster


async def kubectl(
    cluster: EmbeddedCluster, *args: str, stdin: bytes | None = None
) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        str(cluster.kubeconfig_path),
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err


def pod(name: str, command: list[str], **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "busybox", "command": command, **container}],
        },
    }


async def create_and_wait(cluster: EmbeddedCluster, body: dict[str, Any], condition: str) -> None:
    await cluster.store.create("pods", "default", body)
    code, _, err = await kubectl(
        cluster, "wait", f"--for={condition}", f"pod/{body['metadata']['name']}", "--timeout=30s"
    )
    assert code == 0, err


async def test_kubectl_logs_follow_with_timestamps(real_cluster: EmbeddedCluster) -> None:
    await create_and_wait(
        real_cluster, pod("talker", ["sh", "-c", "echo one; echo two"]), "jsonpath={.status.phase}=Succeeded"
    )
    code, out, err = await kubectl(real_cluster, "logs", "-f", "--timestamps", "talker")
    assert code == 0, err
    assert re.fullmatch(TIMESTAMP + rb" one\n" + TIMESTAMP + rb" two\n", out), out


async def test_kubectl_exec_exit_code_and_attach_stdin(real_cluster: EmbeddedCluster) -> None:
    await create_and_wait(real_cluster, pod("sleeper", ["sleep", "3600"]), "condition=Ready")
    code, _, _ = await kubectl(real_cluster, "exec", "sleeper", "--", "sh", "-c", "exit 3")
    assert code == 3
    await create_and_wait(real_cluster, pod("shell", ["sh"], stdin=True, stdinOnce=True), "condition=Ready")
    code, out, err = await kubectl(real_cluster, "attach", "-i", "-q", "shell", stdin=b"echo via-attach\n")
    assert (code, out) == (0, b"via-attach\n"), err


OFFICIAL_CLIENT_SCRIPT = """
import json, sys
from kubernetes import client, config
from kubernetes.stream import stream

configuration = client.Configuration()
config.load_kube_config(config_file=sys.argv[1], client_configuration=configuration)
api = client.CoreV1Api(client.ApiClient(configuration))
resp = stream(api.connect_get_namespaced_pod_exec, "target", "default",
              command=["sh", "-c", "echo out; exit 3"],
              stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
resp.run_forever(timeout=20)
code = resp.returncode
resp.close()
log = api.read_namespaced_pod_log("target", "default", follow=True, _preload_content=False)
first = next(log.stream(amt=64)).decode()
log.close()
print(json.dumps({"returncode": code, "first_log_bytes": first}))
"""


async def test_official_client_exec_returncode_and_log_follow(real_cluster: EmbeddedCluster) -> None:
    """In a process of its own: the sync client leaves sockets to the garbage collector (its own leak)."""
    await create_and_wait(
        real_cluster, pod("target", ["sh", "-c", "echo first; sleep 3600"]), "condition=Ready"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        OFFICIAL_CLIENT_SCRIPT,
        str(real_cluster.kubeconfig_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    assert json.loads(out) == {"returncode": 3, "first_log_bytes": "first\n"}


@pytest.mark.parametrize(
    "protocol", ["v4.channel.k8s.io", "v5.channel.k8s.io,v4.channel.k8s.io"], ids=["v4", "v5"]
)
async def test_kubernetes_asyncio_attach_feeds_stdin(real_cluster: EmbeddedCluster, protocol: str) -> None:
    await create_and_wait(real_cluster, pod("reader", ["sh"], stdin=True), "condition=Ready")
    configuration = aio_client.Configuration()
    await aio_config.load_kube_config(
        config_file=str(real_cluster.kubeconfig_path), client_configuration=configuration
    )
    async with WsApiClient(configuration=configuration) as ws_api:
        api = aio_client.CoreV1Api(ws_api)
        connecting = await api.connect_get_namespaced_pod_attach(
            "reader",
            "default",
            container="c",
            stdin=True,
            stdout=True,
            stderr=False,
            tty=False,
            _preload_content=False,
            _headers={"sec-websocket-protocol": protocol},
        )
        async with connecting as ws:
            await ws.send_bytes(b"\x00echo attached-$((20 + 22))\n")
            received = b""
            while b"attached-42\n" not in received:
                message = await asyncio.wait_for(ws.receive(), 20)
                assert isinstance(message.data, bytes), message
                if message.data[:1] == b"\x01":
                    received += message.data[1:]
    assert received == b"attached-42\n"


async def test_container_processes_start_with_default_sigpipe(real_cluster: EmbeddedCluster) -> None:
    command = ["sh", "-c", "yes | head -n 1; echo status=$?"]
    await create_and_wait(real_cluster, pod("piper", command), "jsonpath={.status.phase}=Succeeded")
    code, out, err = await kubectl(real_cluster, "logs", "piper")
    assert (code, out) == (0, b"y\nstatus=0\n"), err


async def test_kubectl_run_args_are_the_argv(real_cluster: EmbeddedCluster) -> None:
    """No image entrypoint here: `args` alone is the command, as for an image without ENTRYPOINT."""
    code, _, err = await kubectl(
        real_cluster, "run", "argv", "--image=busybox", "--restart=Never", "--", "sh", "-c", "echo hi"
    )
    assert code == 0, err
    code, _, err = await kubectl(
        real_cluster, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/argv", "--timeout=30s"
    )
    assert code == 0, err
    code, out, err = await kubectl(real_cluster, "logs", "argv")
    assert (code, out) == (0, b"hi\n"), err
    code, out, err = await kubectl(
        real_cluster, "get", "pod", "argv", "-o", "jsonpath={.status.containerStatuses[0].image}"
    )
    assert (code, out) == (0, b"docker.io/library/busybox:latest"), err


async def test_kubectl_logs_of_a_crash_looping_container(real_cluster: EmbeddedCluster) -> None:
    """While it waits to restart, `logs` and `logs --previous` both show the last run."""
    body = pod("crasher", ["sh", "-c", "echo ran; exit 1"])
    body["spec"]["restartPolicy"] = "Always"
    await create_and_wait(
        real_cluster,
        body,
        "jsonpath={.status.containerStatuses[0].state.waiting.reason}=CrashLoopBackOff",
    )
    for extra in ((), ("--previous",)):
        code, out, err = await kubectl(real_cluster, "logs", "crasher", *extra)
        assert (code, out) == (0, b"ran\n"), (extra, err)


async def test_start_error_status_names_no_container(real_cluster: EmbeddedCluster) -> None:
    body = pod("unstartable", ["/no/such/program"])
    await create_and_wait(real_cluster, body, "jsonpath={.status.phase}=Failed")
    code, out, err = await kubectl(
        real_cluster, "get", "pod", "unstartable", "-o", "jsonpath={.status.containerStatuses[0].state}"
    )
    assert code == 0, err
    terminated = json.loads(out)["terminated"]
    assert (terminated["reason"], "containerID" in terminated) == ("StartError", False)


async def test_patched_image_restarts_the_container(real_cluster: EmbeddedCluster) -> None:
    """Even with restartPolicy Never: a changed definition is a restart, not a crash (no back-off)."""
    await create_and_wait(real_cluster, pod("repatched", ["sleep", "3600"]), "condition=Ready")
    code, _, err = await kubectl(real_cluster, "set", "image", "pod/repatched", "c=busybox:1.37")
    assert code == 0, err
    code, _, err = await kubectl(
        real_cluster,
        "wait",
        "--for=jsonpath={.status.containerStatuses[0].restartCount}=1",
        "pod/repatched",
        "--timeout=30s",
    )
    assert code == 0, err
    code, _, err = await kubectl(
        real_cluster, "wait", "--for=condition=Ready", "pod/repatched", "--timeout=30s"
    )
    assert code == 0, err
    code, out, err = await kubectl(
        real_cluster, "get", "pod", "repatched", "-o", "jsonpath={.status.containerStatuses[0]}"
    )
    status = json.loads(out)
    assert (status["image"], status["lastState"]["terminated"]["exitCode"]) == (
        "docker.io/library/busybox:1.37",
        137,
    )
    code, out, err = await kubectl(
        real_cluster, "get", "pod", "repatched", "-o", "jsonpath={.metadata.generation}"
    )
    assert (code, out) == (0, b"2"), err


async def test_spdy_clients_are_refused_at_once(real_cluster: EmbeddedCluster) -> None:
    """kubectl <= 1.29 (here: a newer one told to use SPDY) gets a clear refusal, no hang."""
    await create_and_wait(real_cluster, pod("spdy", ["sleep", "3600"]), "condition=Ready")
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        str(real_cluster.kubeconfig_path),
        "exec",
        "spdy",
        "--",
        "true",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert (proc.returncode, out, err) == (
        1,
        b"",
        b"error: unable to upgrade connection: Upgrade request required\n",
    )
