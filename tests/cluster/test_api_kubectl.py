"""Real kubectl 1.37 against the server: apply, get, get -w, delete, errors, and what it requests.

Runs on both tiers (tests/cluster/tier.py) except where it looks inside the embedded server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from kuberunner.cluster.server import EmbeddedCluster
from tests.cluster.api_helpers import Kubectl, pod_manifest
from tests.cluster.tier import Target


def pod(target: Target, name: str, image: str | None = None, **spec: Any) -> dict[str, Any]:
    body = pod_manifest(name, image=image or target.image)
    body["spec"].update(spec)
    return body


def manifest(tmp_path: Path, obj: dict[str, Any]) -> str:
    path = tmp_path / f"{obj['metadata']['name']}.json"
    path.write_text(json.dumps(obj))
    return str(path)


async def test_apply_creates_then_patches(api_target: Target, tmp_path: Path) -> None:
    kubectl = api_target.kubectl
    ran = await kubectl("apply", "-f", manifest(tmp_path, pod(api_target, "web")))
    assert (ran.rc, ran.out, ran.err) == (0, "pod/web created\n", "")
    ran = await kubectl("apply", "-f", manifest(tmp_path, pod(api_target, "web")))
    assert (ran.rc, ran.out) == (0, "pod/web unchanged\n")
    ran = await kubectl("apply", "-f", manifest(tmp_path, pod(api_target, "web", api_target.other_image)))
    assert (ran.rc, ran.out, ran.err) == (0, "pod/web configured\n", "")
    stored = await api_target.require("pod", "web")
    assert stored["spec"]["containers"][0]["image"] == api_target.other_image
    assert stored["spec"]["containers"][0]["command"] == ["sleep", "3600"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]


async def test_create_reports_validation_errors(api_target: Target, tmp_path: Path) -> None:
    bad = pod(api_target, "bad")
    del bad["spec"]["containers"][0]["image"]
    ran = await api_target.kubectl("create", "-f", manifest(tmp_path, bad))
    assert ran.rc == 1
    assert 'The Pod "bad" is invalid: spec.containers[0].image: Required value' in ran.err


async def test_get_pods_prints_the_usual_columns(api_target: Target) -> None:
    await api_target.create(pod(api_target, "web"))
    ran = await api_target.kubectl("wait", "--for=condition=Ready", "pod/web", "--timeout=60s", limit=70)
    assert ran.rc == 0, ran.err
    ran = await api_target.kubectl("get", "pods")
    assert ran.rc == 0
    header, row = ran.out.splitlines()
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert re.fullmatch(r"web\s+1/1\s+Running\s+0\s+\d+s", row)


async def test_get_missing_pod(api_target: Target) -> None:
    ran = await api_target.kubectl("get", "pod", "nope")
    assert (ran.rc, ran.out, ran.err) == (1, "", 'Error from server (NotFound): pods "nope" not found\n')


@pytest.mark.embedded_only("drives the pod's status through the fake kubelet")
async def test_get_pods_watch_shows_a_change(kubectl: Kubectl, cluster: EmbeddedCluster) -> None:
    await cluster.store.create("pods", "default", pod_manifest("web"))
    proc = await kubectl.start("get", "pods", "-w")
    assert proc.stdout is not None
    try:
        header = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert header.split() == [b"NAME", b"READY", b"STATUS", b"RESTARTS", b"AGE"]
        first = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert first.split()[:3] == [b"web", b"1/1", b"Running"]

        def finish(pod: dict[str, object]) -> None:
            status = pod["status"]
            assert isinstance(status, dict)
            status["phase"] = "Failed"
            status["containerStatuses"][0]["ready"] = False
            status["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 3, "reason": "Error"}}

        cluster.store.update_pod("default", "web", finish)
        changed = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert changed.split()[:3] == [b"web", b"0/1", b"Error"]
    finally:
        proc.kill()
        await proc.wait()


async def test_delete_returns_once_the_pod_is_gone(api_target: Target) -> None:
    """`sleep` ignores SIGTERM: the pod goes when its 2 s grace period ends, and kubectl waits."""
    await api_target.create(pod(api_target, "web", terminationGracePeriodSeconds=2))
    ran = await api_target.kubectl("wait", "--for=condition=Ready", "pod/web", "--timeout=60s", limit=70)
    assert ran.rc == 0, ran.err
    ran = await api_target.kubectl("delete", "pod", "web")
    assert (ran.rc, ran.out) == (0, f'pod "web" deleted from {api_target.namespace} namespace\n')
    assert await api_target.get("pod", "web") is None


@pytest.mark.embedded_only("reads the embedded server's request log")
async def test_requests_kubectl_sends(
    kubectl: Kubectl, cluster: EmbeddedCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Documents what kubectl 1.37 asks for; the report lists these requests."""
    caplog.set_level(logging.DEBUG, logger="kuberunner.cluster.api.apiserver")
    assert (await kubectl("apply", "-f", manifest(tmp_path, pod_manifest("web")))).rc == 0
    assert (await kubectl("delete", "pod", "web")).rc == 0
    seen = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request ")]
    paths = [m.split()[2] for m in seen]
    assert {"/api?timeout=32s", "/apis?timeout=32s", "/api/v1?timeout=32s", "/openapi/v3?timeout=32s"} <= set(
        paths
    )
    assert any(p.startswith("/openapi/v3/api/v1?hash=") for p in paths)
    assert any("fieldManager=kubectl-client-side-apply&fieldValidation=Strict" in p for p in paths)
    watch = [p for p in paths if "watch=true" in p]
    assert watch and "sendInitialEvents=true" in watch[0] and "fieldSelector=metadata.name%3Dweb" in watch[0]
    assert any("g=apidiscovery.k8s.io" in m for m in seen if "/api?" in m)


async def test_typed_create_commands(api_target: Target) -> None:
    """kubectl sends these as protobuf to a server that offers it."""
    kubectl = api_target.kubectl
    ran = await kubectl("create", "secret", "generic", "s1", "--from-literal=a=b", "--from-literal=c=dd")
    assert (ran.rc, ran.out) == (0, "secret/s1 created\n")
    ran = await kubectl("create", "configmap", "c1", "--from-literal=x=y")
    assert (ran.rc, ran.out) == (0, "configmap/c1 created\n")
    team = api_target.name("team")
    ran = await kubectl("create", "namespace", team)
    assert (ran.rc, ran.out) == (0, f"namespace/{team} created\n")
    try:
        assert (await api_target.require("secret", "s1"))["data"] == {"a": "Yg==", "c": "ZGQ="}
        assert (await api_target.require("cm", "c1"))["data"] == {"x": "y"}
        assert (await api_target.require("ns", team))["status"] == {"phase": "Active"}
    finally:
        await kubectl("delete", "namespace", team, "--wait=false")
