"""Real clients against a cluster that runs containers: kubectl, kubernetes, kubernetes_asyncio.

Runs on both tiers (tests/cluster/tier.py): the embedded cluster with its real kubelet, and the real
cluster, which judges every expectation here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as aio_client
from kubernetes_asyncio import config as aio_config
from kubernetes_asyncio.stream import WsApiClient

from tests.cluster.tier import Target

KUBECTL = str(Path(sys.executable).parent / "kubectl")
TIMESTAMP = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


async def kubectl(target: Target, *args: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *target.kubectl.argv(*args),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=target.kubectl.env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 90)
    assert proc.returncode is not None
    return proc.returncode, out, err


def pod(target: Target, name: str, command: list[str], **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": target.image, "command": command, **container}],
        },
    }


async def create_and_wait(target: Target, body: dict[str, Any], condition: str) -> None:
    await target.create(body)
    code, _, err = await kubectl(
        target, "wait", f"--for={condition}", f"pod/{body['metadata']['name']}", "--timeout=60s"
    )
    assert code == 0, err


async def test_kubectl_logs_follow_with_timestamps(node_target: Target) -> None:
    await create_and_wait(
        node_target,
        pod(node_target, "talker", ["sh", "-c", "echo one; echo two"]),
        "jsonpath={.status.phase}=Succeeded",
    )
    code, out, err = await kubectl(node_target, "logs", "-f", "--timestamps", "talker")
    assert code == 0, err
    assert re.fullmatch(TIMESTAMP + rb" one\n" + TIMESTAMP + rb" two\n", out), out


async def test_kubectl_exec_exit_code_and_attach_stdin(node_target: Target) -> None:
    await create_and_wait(node_target, pod(node_target, "sleeper", ["sleep", "3600"]), "condition=Ready")
    code, _, _ = await kubectl(node_target, "exec", "sleeper", "--", "sh", "-c", "exit 3")
    assert code == 3
    await create_and_wait(
        node_target, pod(node_target, "shell", ["sh"], stdin=True, stdinOnce=True), "condition=Ready"
    )
    code, out, err = await kubectl(node_target, "attach", "-i", "-q", "shell", stdin=b"echo via-attach\n")
    assert (code, out) == (0, b"via-attach\n"), err


OFFICIAL_CLIENT_SCRIPT = """
import json, sys
from kubernetes import client, config
from kubernetes.stream import stream

configuration = client.Configuration()
config.load_kube_config(config_file=sys.argv[1], client_configuration=configuration)
api = client.CoreV1Api(client.ApiClient(configuration))
resp = stream(api.connect_get_namespaced_pod_exec, "target", sys.argv[2],
              command=["sh", "-c", "echo out; exit 3"],
              stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
resp.run_forever(timeout=20)
code = resp.returncode
resp.close()
log = api.read_namespaced_pod_log("target", sys.argv[2], follow=True, _preload_content=False)
first = next(log.stream(amt=64)).decode()
log.close()
print(json.dumps({"returncode": code, "first_log_bytes": first}))
"""


async def test_official_client_exec_returncode_and_log_follow(node_target: Target) -> None:
    """In a process of its own: the sync client leaves sockets to the garbage collector (its own leak)."""
    await create_and_wait(
        node_target, pod(node_target, "target", ["sh", "-c", "echo first; sleep 3600"]), "condition=Ready"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        OFFICIAL_CLIENT_SCRIPT,
        str(node_target.kubeconfig),
        node_target.namespace,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    assert json.loads(out) == {"returncode": 3, "first_log_bytes": "first\n"}


@pytest.mark.parametrize(
    "protocol", ["v4.channel.k8s.io", "v5.channel.k8s.io,v4.channel.k8s.io"], ids=["v4", "v5"]
)
async def test_kubernetes_asyncio_attach_feeds_stdin(node_target: Target, protocol: str) -> None:
    await create_and_wait(node_target, pod(node_target, "reader", ["sh"], stdin=True), "condition=Ready")
    configuration = aio_client.Configuration()
    await aio_config.load_kube_config(
        config_file=str(node_target.kubeconfig), client_configuration=configuration
    )
    async with WsApiClient(configuration=configuration) as ws_api:
        api = aio_client.CoreV1Api(ws_api)
        connecting = await api.connect_get_namespaced_pod_attach(
            "reader",
            node_target.namespace,
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


async def test_container_processes_start_with_default_sigpipe(node_target: Target) -> None:
    command = ["sh", "-c", "yes | head -n 1; echo status=$?"]
    await create_and_wait(
        node_target, pod(node_target, "piper", command), "jsonpath={.status.phase}=Succeeded"
    )
    code, out, err = await kubectl(node_target, "logs", "piper")
    assert (code, out) == (0, b"y\nstatus=0\n"), err


async def test_kubectl_run_args_are_the_argv(node_target: Target) -> None:
    """No image entrypoint here: `args` alone is the command, as for an image without ENTRYPOINT."""
    code, _, err = await kubectl(
        node_target,
        "run",
        "argv",
        f"--image={node_target.image}",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo hi",
    )
    assert code == 0, err
    code, _, err = await kubectl(
        node_target, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/argv", "--timeout=30s"
    )
    assert code == 0, err
    code, out, err = await kubectl(node_target, "logs", "argv")
    assert (code, out) == (0, b"hi\n"), err
    code, out, err = await kubectl(
        node_target, "get", "pod", "argv", "-o", "jsonpath={.status.containerStatuses[0].image}"
    )
    assert (code, out) == (0, node_target.image_reported.encode()), err


async def test_kubectl_logs_of_a_crash_looping_container(node_target: Target) -> None:
    """While it waits to restart, `logs` shows the last run."""
    body = pod(node_target, "crasher", ["sh", "-c", "echo ran; exit 1"])
    body["spec"]["restartPolicy"] = "Always"
    await create_and_wait(
        node_target,
        body,
        "jsonpath={.status.containerStatuses[0].state.waiting.reason}=CrashLoopBackOff",
    )
    code, out, err = await kubectl(node_target, "logs", "crasher")
    assert (code, out) == (0, b"ran\n"), err


async def test_kubectl_logs_previous_shows_the_run_before_the_restart(node_target: Target) -> None:
    """The first run fails, the second (an emptyDir remembers the first) keeps running."""
    script = "if [ -e /mark/ran ]; then echo second; exec sleep 3600; fi; touch /mark/ran; echo first; exit 1"
    body = pod(
        node_target, "twice", ["sh", "-c", script], volumeMounts=[{"name": "mark", "mountPath": "/mark"}]
    )
    body["spec"]["restartPolicy"] = "Always"
    body["spec"]["volumes"] = [{"name": "mark", "emptyDir": {}}]
    await create_and_wait(node_target, body, "jsonpath={.status.containerStatuses[0].restartCount}=1")
    code, out, err = await kubectl(node_target, "logs", "twice", "--previous")
    assert (code, out) == (0, b"first\n"), err


async def test_start_error_status_names_the_container(node_target: Target) -> None:
    """containerd made the container and only its task failed: the status names it, never started."""
    body = pod(node_target, "unstartable", ["/no/such/program"])
    await create_and_wait(node_target, body, "jsonpath={.status.phase}=Failed")
    code, out, err = await kubectl(
        node_target, "get", "pod", "unstartable", "-o", "jsonpath={.status.containerStatuses[0]}"
    )
    assert code == 0, err
    status = json.loads(out)
    terminated = status["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"], terminated["startedAt"]) == (
        "StartError",
        128,
        "1970-01-01T00:00:00Z",
    )
    assert re.fullmatch(r"containerd://[0-9a-f]{64}", terminated["containerID"])
    assert (status["containerID"], status["started"]) == (terminated["containerID"], False)
    assert '"/no/such/program"' in terminated["message"]
    code, out, err = await kubectl(node_target, "logs", "unstartable")
    assert (code, out) == (0, b""), err


async def test_patched_image_restarts_the_container(node_target: Target) -> None:
    """Even with restartPolicy Never: a changed definition is a restart, not a crash (no back-off)."""
    await create_and_wait(node_target, pod(node_target, "repatched", ["sleep", "3600"]), "condition=Ready")
    code, _, err = await kubectl(node_target, "set", "image", "pod/repatched", f"c={node_target.other_image}")
    assert code == 0, err
    code, _, err = await kubectl(
        node_target,
        "wait",
        "--for=jsonpath={.status.containerStatuses[0].restartCount}=1",
        "pod/repatched",
        "--timeout=30s",
    )
    assert code == 0, err
    code, _, err = await kubectl(
        node_target, "wait", "--for=condition=Ready", "pod/repatched", "--timeout=30s"
    )
    assert code == 0, err
    code, out, err = await kubectl(
        node_target, "get", "pod", "repatched", "-o", "jsonpath={.status.containerStatuses[0]}"
    )
    status = json.loads(out)
    assert (status["image"], status["lastState"]["terminated"]["exitCode"]) == (
        node_target.other_image_reported,
        137,
    )
    code, out, err = await kubectl(
        node_target, "get", "pod", "repatched", "-o", "jsonpath={.metadata.generation}"
    )
    assert (code, out) == (0, b"2"), err
    status = (await node_target.require("pod", "repatched"))["status"]
    observed = {c["type"]: c["observedGeneration"] for c in status["conditions"]}
    # The kubelet brings every condition to the new generation, the scheduler's too.
    assert (status["observedGeneration"], observed["Ready"], observed["PodScheduled"]) == (2, 2, 2)


@pytest.mark.embedded_only("the real API server serves SPDY; the embedded one refuses it, as the README says")
async def test_spdy_clients_are_refused_at_once(node_target: Target) -> None:
    """kubectl <= 1.29 (here: a newer one told to use SPDY) gets a clear refusal, no hang."""
    await create_and_wait(node_target, pod(node_target, "spdy", ["sleep", "3600"]), "condition=Ready")
    proc = await asyncio.create_subprocess_exec(
        *node_target.kubectl.argv("exec", "spdy", "--", "true"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**node_target.kubectl.env(), "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert (proc.returncode, out, err) == (
        1,
        b"",
        b"error: unable to upgrade connection: Upgrade request required\n",
    )


@pytest.mark.embedded_only("the real API server serves SPDY; the embedded one refuses it, as the README says")
async def test_kubectl_1_28_exec_is_refused_at_once(node_target: Target, kubectl_1_28_binary: Path) -> None:
    await create_and_wait(node_target, pod(node_target, "spdy", ["sleep", "3600"]), "condition=Ready")
    old = dataclasses.replace(node_target.kubectl, binary=kubectl_1_28_binary)
    ran = await old("exec", "spdy", "--", "true")
    # The same 400 as for kubectl 1.37 told to use SPDY; 1.28 words it differently.
    assert (ran.rc, ran.out, ran.err) == (1, "", "Error from server (BadRequest): Upgrade request required\n")


async def test_running_pod_status_fields(node_target: Target) -> None:
    """What a 1.34 kubelet reports besides the states: generations observed, each container's
    resources and mounts."""
    body = pod(
        node_target,
        "fields",
        ["sleep", "3600"],
        volumeMounts=[
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "scratch", "mountPath": "/ro", "readOnly": True},
        ],
    )
    body["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    body["spec"]["containers"][0]["resources"] = {"limits": {"memory": "64Mi"}}
    await create_and_wait(node_target, body, "condition=Ready")
    status = (await node_target.require("pod", "fields"))["status"]
    assert status["observedGeneration"] == 1
    assert {c["type"]: c["observedGeneration"] for c in status["conditions"]} == {
        "PodReadyToStartContainers": 1,
        "Initialized": 1,
        "Ready": 1,
        "ContainersReady": 1,
        "PodScheduled": 1,
    }
    container = status["containerStatuses"][0]
    assert container["resources"] == {"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}}
    mounts = [m for m in container["volumeMounts"] if m["name"] == "scratch"]
    assert mounts == [
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "scratch", "mountPath": "/ro", "readOnly": True, "recursiveReadOnly": "Disabled"},
    ]
