"""attach and exec over WebSocket against real containers, with aiohttp and kubernetes_asyncio clients."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.stream import WsApiClient

from kuberunner.cluster.node.streaming import ChannelCodec, CloseChannel, Data
from tests.cluster.fixtures_kubelet import Node, container, node

__all__ = ["node"]


def test_codec_frames() -> None:
    v5, v4, b64 = (
        ChannelCodec("v5.channel.k8s.io"),
        ChannelCodec("v4.channel.k8s.io"),
        ChannelCodec("v4.base64.channel.k8s.io"),
    )
    assert v5.encode(1, b"hi") == b"\x01hi"
    assert v5.decode(b"\xff\x00") == CloseChannel(0)
    assert v4.decode(b"\xff\x00") == Data(255, b"\x00")
    assert v4.decode("\x00text") == Data(0, b"text")
    assert b64.encode(1, b"hi") == "1aGk="
    assert b64.decode("0aGk=") == Data(0, b"hi")


async def _ws(node: Node, pod: str, sub: str, query: str, protocol: str = "v5.channel.k8s.io") -> Any:
    return await node.http.ws_connect(f"{node.path(pod)}/{sub}?{query}", protocols=[protocol], autoping=False)


async def _collect(ws: Any) -> tuple[dict[int, bytes], dict[str, Any] | None, list[bytes]]:
    """Frames until the close frame: output by channel, the channel-3 status, and every frame in order."""
    channels: dict[int, bytes] = {}
    frames: list[bytes] = []
    async for message in ws:
        assert message.type == aiohttp.WSMsgType.BINARY
        frames.append(message.data)
        channels[message.data[0]] = channels.get(message.data[0], b"") + message.data[1:]
    assert ws.close_code == 1000
    status = json.loads(channels[3]) if channels.get(3) else None
    return channels, status, frames


async def test_exec_exit_code_status_and_output_stays_out_of_the_log(node: Node) -> None:
    await node.create_pod("ex", [container("c", "echo from-pid1; sleep 60")])
    await node.wait_state("ex", "running")
    ws = await _ws(
        node,
        "ex",
        "exec",
        "command=sh&command=-c&command=echo+out;echo+err+>%262;exit+3&stdout=true&stderr=true",
    )
    assert ws.protocol == "v5.channel.k8s.io"
    channels, status, frames = await _collect(ws)
    assert frames[0] == b"\x01"
    assert (channels[1], channels[2]) == (b"out\n", b"err\n")
    assert status == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
        "[sh -c echo out;echo err >&2;exit 3], exit code 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
    async with node.http.get(node.path("ex") + "/log") as response:
        assert await response.read() == b"from-pid1\n"


async def test_exec_with_kubernetes_asyncio_v4(node: Node) -> None:
    await node.create_pod("kex", [container("c", "sleep 60")])
    await node.wait_state("kex", "running")
    config = client.Configuration(host=node.url)
    async with WsApiClient(configuration=config) as api_client:
        api: Any = client.CoreV1Api(api_client=api_client)
        output = await api.connect_get_namespaced_pod_exec(
            "kex", "default", command=["sh", "-c", "echo hello; exit 0"], stdout=True, stderr=True
        )
        assert output == "hello\n"
        ws_cm = await api.connect_get_namespaced_pod_exec(
            "kex", "default", command=["sh", "-c", "exit 3"], stdout=True, _preload_content=False
        )
        async with ws_cm as ws:
            _, _, frames = await _collect(ws)
        assert WsApiClient.parse_error_data(frames[-1][1:]) == 3


async def test_exec_stdin_and_v5_close(node: Node) -> None:
    await node.create_pod("cat", [container("c", "sleep 60")])
    await node.wait_state("cat", "running")
    ws = await _ws(node, "cat", "exec", "command=cat&stdin=true&stdout=true")
    await ws.send_str("\x00typed as text\n")
    await ws.send_bytes(b"\x00and binary\n")
    await ws.send_bytes(b"\xff\x00")
    channels, status, _ = await _collect(ws)
    assert channels[1] == b"typed as text\nand binary\n"
    assert status == {"metadata": {}, "status": "Success"}


async def test_exec_command_that_cannot_start_is_internal_error(node: Node) -> None:
    await node.create_pod("nostart", [container("c", "sleep 60")])
    await node.wait_state("nostart", "running")
    ws = await _ws(node, "nostart", "exec", "command=no-such-cmd&stdout=true")
    _, status, _ = await _collect(ws)
    assert status is not None
    assert (status["reason"], status["code"]) == ("InternalError", 500)
    assert "executable file not found in $PATH" in status["message"]


async def test_attach_relays_partial_output_live(node: Node) -> None:
    await node.create_pod("live", [container("c", "read go; printf abc; sleep 1; echo def", stdin=True)])
    await node.wait_state("live", "running")
    ws = await _ws(node, "live", "attach", "stdin=true&stdout=true&stderr=true")
    await ws.send_bytes(b"\x00go\n")
    seen: list[tuple[float, bytes]] = []
    started = time.monotonic()
    async for message in ws:
        if message.data[:1] == b"\x01" and message.data[1:]:
            seen.append((time.monotonic() - started, message.data))
    assert seen[0][1] == b"\x01abc"
    assert b"".join(d[1:] for _, d in seen) == b"abcdef\n"
    assert seen[-1][0] - seen[0][0] > 0.5


async def test_attach_feeds_a_shell_and_survives_disconnects(node: Node) -> None:
    await node.create_pod("shell", [container("c", "exec sh", command=["sh"], stdin=True)])
    await node.wait_state("shell", "running")
    for protocol in ("v4.channel.k8s.io", "v5.channel.k8s.io"):
        ws = await _ws(node, "shell", "attach", "stdin=true&stdout=true&stderr=true", protocol)
        await ws.send_bytes(b"\x00echo via-" + protocol[:2].encode() + b"\n")
        message = await ws.receive()
        while message.data == b"\x01":
            message = await ws.receive()
        assert message.data == b"\x01via-" + protocol[:2].encode() + b"\n"
        await ws.close()
    await asyncio.sleep(0)
    assert "running" in node.status("shell")["state"]


async def test_attach_with_kubernetes_asyncio(node: Node) -> None:
    await node.create_pod("kat", [container("c", "x", command=["sh"], stdin=True)])
    await node.wait_state("kat", "running")
    async with WsApiClient(configuration=client.Configuration(host=node.url)) as api_client:
        api: Any = client.CoreV1Api(api_client=api_client)
        for protocol in ("v4.channel.k8s.io", "v5.channel.k8s.io"):
            ws_cm = await api.connect_get_namespaced_pod_attach(
                "kat",
                "default",
                stdin=True,
                stdout=True,
                stderr=True,
                _preload_content=False,
                _headers={"sec-websocket-protocol": protocol},
            )
            async with ws_cm as ws:
                await ws.send_bytes(b"\x00echo hi\n")
                data = b""
                while data != b"hi\n":
                    data += (await ws.receive_bytes())[1:]
                if protocol.startswith("v5"):
                    # Only a v5 session knows the CLOSE signal: it ends at once with Success.
                    await ws.send_bytes(b"\xff\x00")
                    _, status, _ = await _collect(ws)
                    assert status == {"metadata": {}, "status": "Success"}


async def test_stdin_once_eof_closes_container_stdin_and_waits_for_exit(node: Node) -> None:
    await node.create_pod("once", [container("c", "x", command=["cat"], stdin=True, stdinOnce=True)])
    await node.wait_state("once", "running")
    ws = await _ws(node, "once", "attach", "stdin=true&stdout=true")
    await ws.send_bytes(b"\x00line\n")
    await ws.send_bytes(b"\xff\x00")
    channels, status, _ = await _collect(ws)
    assert channels[1] == b"line\n"
    assert status == {"metadata": {}, "status": "Success"}
    await node.wait_phase("once", ["Succeeded"])


async def test_attach_without_stdin_once_ends_at_client_eof(node: Node) -> None:
    await node.create_pod("keep", [container("c", "x", command=["cat"], stdin=True)])
    await node.wait_state("keep", "running")
    ws = await _ws(node, "keep", "attach", "stdin=true&stdout=true")
    await ws.send_bytes(b"\xff\x00")
    _, status, _ = await _collect(ws)
    assert status == {"metadata": {}, "status": "Success"}
    assert "running" in node.status("keep")["state"]


async def test_pings_are_answered(node: Node) -> None:
    await node.create_pod("ping", [container("c", "sleep 60", stdin=True)])
    await node.wait_state("ping", "running")
    ws = await _ws(node, "ping", "attach", "stdout=true")
    assert (await ws.receive()).data == b"\x01"
    await ws.ping(b"beat")
    pong = await ws.receive()
    assert (pong.type, pong.data) == (aiohttp.WSMsgType.PONG, b"beat")
    await ws.close()


async def test_refusals_before_upgrade(node: Node) -> None:
    await node.create_pod("ref", [container("c", "sleep 60")])
    await node.wait_state("ref", "running")
    for method, query in (("GET", "stdout=true"), ("POST", "stdout=true")):
        async with node.http.request(method, node.path("ref") + "/attach?" + query) as response:
            assert response.status == 400
            assert (await response.json())["message"] == "Upgrade request required"
    # SPDY (kubectl <= 1.29, client-go's SPDY executor) is not served: the same refusal as any
    # request that is not a WebSocket upgrade, which those clients report as the error it is.
    spdy = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "v4.channel.k8s.io"}
    async with node.http.post(node.path("ref") + "/exec?command=true&stdout=true", headers=spdy) as response:
        assert response.status == 400
        body = await response.json()
        assert (body["kind"], body["reason"], body["message"]) == (
            "Status",
            "BadRequest",
            "Upgrade request required",
        )
    try:
        await node.http.ws_connect(node.path("ref") + "/attach", protocols=["v5.channel.k8s.io"])
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 400
    else:
        raise AssertionError("no stream requested was accepted")


async def test_attach_to_a_finished_container_is_internal_error(node: Node) -> None:
    await node.create_pod("gone", [container("c", "true")])
    await node.wait_phase("gone", ["Succeeded"])
    ws = await _ws(node, "gone", "attach", "stdout=true")
    _, status, _ = await _collect(ws)
    assert status is not None
    assert status["reason"] == "InternalError"
    assert 'container "c" in pod "gone" is not running' in status["message"]
