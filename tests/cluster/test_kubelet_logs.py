"""pods/log over HTTP against real containers: the CRI quirks, options and error answers."""

from __future__ import annotations

import re
import time

import pytest

from kuberunner.cluster.node import kubelet as kubelet_module
from tests.cluster.fixtures_kubelet import Node, container, node

__all__ = ["node"]

TS = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z "


async def _get(node: Node, pod: str, **query: str) -> tuple[int, bytes]:
    async with node.http.get(node.path(pod) + "/log", params=query) as response:
        return response.status, await response.read()


async def test_partial_line_is_invisible_until_its_newline(node: Node) -> None:
    await node.create_pod("quirk", [container("c", "printf abc; sleep 1.5; echo def")])
    await node.wait_state("quirk", "running")
    started = time.monotonic()
    chunks: list[tuple[float, bytes]] = []
    async with node.http.get(node.path("quirk") + "/log", params={"follow": "true"}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        async for chunk in response.content.iter_any():
            chunks.append((time.monotonic() - started, chunk))
    assert b"".join(c for _, c in chunks) == b"abcdef\n"
    assert chunks[0][0] > 1.0
    assert chunks[0][1].startswith(b"abcdef")


async def test_long_line_becomes_partial_records(node: Node) -> None:
    await node.create_pod("long", [container("c", "head -c 40960 /dev/zero | tr '\\0' x; echo")])
    await node.wait_phase("long", ["Succeeded"])
    assert await _get(node, "long") == (200, b"x" * 40960 + b"\n")
    status, body = await _get(node, "long", timestamps="true")
    assert status == 200
    # As the kubelet serves it: the runtime's three partial records, one timestamp (the first's).
    assert re.fullmatch(TS + b"x{40960}\n", body)


async def test_stdout_and_stderr_merge_and_final_partial(node: Node) -> None:
    await node.create_pod(
        "merge", [container("c", "echo out; sleep 0.1; echo err >&2; sleep 0.1; printf tail")]
    )
    await node.wait_phase("merge", ["Succeeded"])
    assert await _get(node, "merge") == (200, b"out\nerr\ntail")
    assert await _get(node, "merge", stream="Stderr") == (200, b"err\n")


async def test_tail_limit_and_since(node: Node) -> None:
    await node.create_pod("opts", [container("c", "echo 1; echo 2; echo 3")])
    await node.wait_phase("opts", ["Succeeded"])
    assert await _get(node, "opts", tailLines="2") == (200, b"2\n3\n")
    assert await _get(node, "opts", tailLines="0") == (200, b"")
    assert await _get(node, "opts", limitBytes="3") == (200, b"1\n2")
    _, stamped = await _get(node, "opts", timestamps="true")
    second = stamped.split(b".")[0].decode() + "Z"
    assert await _get(node, "opts", sinceTime=second) == (200, b"1\n2\n3\n")
    assert await _get(node, "opts", sinceTime="2999-01-01T00:00:00Z") == (200, b"")
    assert await _get(node, "opts", sinceSeconds="3600") == (200, b"1\n2\n3\n")


async def test_follow_ends_when_the_container_stops(node: Node) -> None:
    await node.create_pod("fol", [container("c", "echo a; sleep 0.5; echo b")])
    await node.wait_state("fol", "running")
    assert await _get(node, "fol", follow="true") == (200, b"a\nb\n")


async def test_exact_error_answers(node: Node) -> None:
    await node.create_pod(
        "wait",
        [container("c", "true", volumeMounts=[{"name": "s", "mountPath": "/s"}])],
        volumes=[{"name": "s", "secret": {"secretName": "absent"}}],
    )
    await node.store.wait_for(lambda: node.pod("wait")["status"].get("containerStatuses"))  # type: ignore[index]
    status, body = await _get(node, "wait")
    assert status == 400
    assert b'container \\"c\\" in pod \\"wait\\" is waiting to start: ContainerCreating' in body
    status, body = await _get(node, "wait", container="nope")
    assert (status, b"container nope is not valid for pod wait" in body) == (400, True)
    status, body = await _get(node, "wait", sinceSeconds="1", sinceTime="2024-01-01T00:00:00Z")
    assert status == 422
    assert b'"kind": "PodLogOptions"' in body
    status, body = await _get(node, "wait", tailLines="-1")
    assert (status, b"tailLines: Invalid value: -1" in body) == (422, True)
    status, body = await _get(node, "wait", follow="maybe")
    assert status == 400
    status, body = await _get(node, "wait", previous="true")
    assert (status, b"previous terminated container" in body) == (400, True)
    await node.create_pod("two", [container("a", "true"), container("b", "true")])
    status, body = await _get(node, "two")
    assert (status, b"choose one of: [a b]" in body) == (400, True)


async def test_unscheduled_pod_gets_204(node: Node) -> None:
    node.store.put(
        "pods",
        {
            "metadata": {"name": "nobody", "namespace": "default", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
            "status": {},
        },
    )
    assert await _get(node, "nobody") == (204, b"")


async def test_previous_instance_after_restart(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kubelet_module, "BACKOFF_START", 0.05)
    script = "test -e /v/m && { echo second; exit 0; }; touch /v/m; echo first; exit 1"
    await node.create_pod(
        "prev",
        [container("c", script, volumeMounts=[{"name": "v", "mountPath": "/v"}])],
        restartPolicy="OnFailure",
        volumes=[{"name": "v", "emptyDir": {}}],
    )
    pod = await node.wait_phase("prev", ["Succeeded"])
    status = pod["status"]["containerStatuses"][0]
    assert (status["restartCount"], status["lastState"]["terminated"]["exitCode"]) == (1, 1)
    assert await _get(node, "prev", previous="true") == (200, b"first\n")
    assert await _get(node, "prev") == (200, b"second\n")
