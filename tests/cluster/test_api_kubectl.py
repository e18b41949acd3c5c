"""Real kubectl 1.37 against the server: apply, get, get -w, delete, errors, and what it requests."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import pytest

from kuberunner.cluster.server import EmbeddedCluster
from tests.cluster.api_helpers import FakeKubelet, Kubectl, pod_manifest


def manifest(tmp_path: Path, name: str, image: str = "busybox:1.36") -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(pod_manifest(name, image=image)))
    return str(path)


async def test_apply_creates_then_patches(kubectl: Kubectl, cluster: EmbeddedCluster, tmp_path: Path) -> None:
    ran = await kubectl("apply", "-f", manifest(tmp_path, "web"))
    assert (ran.rc, ran.out, ran.err) == (0, "pod/web created\n", "")
    ran = await kubectl("apply", "-f", manifest(tmp_path, "web"))
    assert (ran.rc, ran.out) == (0, "pod/web unchanged\n")
    ran = await kubectl("apply", "-f", manifest(tmp_path, "web", image="busybox:1.37"))
    assert (ran.rc, ran.out, ran.err) == (0, "pod/web configured\n", "")
    pod = cluster.store.get("pods", "default", "web")
    assert pod is not None
    assert pod["spec"]["containers"][0]["image"] == "busybox:1.37"
    assert pod["spec"]["containers"][0]["command"] == ["sleep", "3600"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in pod["metadata"]["annotations"]


async def test_create_reports_validation_errors(kubectl: Kubectl, tmp_path: Path) -> None:
    bad = pod_manifest("bad")
    del bad["spec"]["containers"][0]["image"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    ran = await kubectl("create", "-f", str(path))
    assert ran.rc == 1
    assert 'The Pod "bad" is invalid: spec.containers[0].image: Required value' in ran.err


async def test_get_pods_prints_the_usual_columns(kubectl: Kubectl, cluster: EmbeddedCluster) -> None:
    await cluster.store.create("pods", "default", pod_manifest("web"))
    ran = await kubectl("get", "pods")
    assert ran.rc == 0
    header, row = ran.out.splitlines()
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert re.fullmatch(r"web\s+1/1\s+Running\s+0\s+\d+s", row)


async def test_get_missing_pod(kubectl: Kubectl) -> None:
    ran = await kubectl("get", "pod", "nope")
    assert (ran.rc, ran.out, ran.err) == (1, "", 'Error from server (NotFound): pods "nope" not found\n')


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


async def test_delete_returns_once_the_pod_is_gone(
    kubectl: Kubectl, cluster: EmbeddedCluster, fake_kubelet: FakeKubelet
) -> None:
    fake_kubelet.delete_delay = 0.5
    await cluster.store.create("pods", "default", pod_manifest("web"))
    ran = await kubectl("delete", "pod", "web")
    assert (ran.rc, ran.out) == (0, 'pod "web" deleted from default namespace\n')
    assert fake_kubelet.deleting == [("web", 30)]
    assert cluster.store.get("pods", "default", "web") is None


async def test_requests_kubectl_sends(
    kubectl: Kubectl, cluster: EmbeddedCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Documents what kubectl 1.37 asks for; the report lists these requests."""
    caplog.set_level(logging.DEBUG, logger="kuberunner.cluster.api.apiserver")
    assert (await kubectl("apply", "-f", manifest(tmp_path, "web"))).rc == 0
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


async def test_typed_create_commands_send_protobuf(kubectl: Kubectl, cluster: EmbeddedCluster) -> None:
    ran = await kubectl("create", "secret", "generic", "s1", "--from-literal=a=b", "--from-literal=c=dd")
    assert (ran.rc, ran.out) == (0, "secret/s1 created\n")
    ran = await kubectl("create", "configmap", "c1", "--from-literal=x=y")
    assert (ran.rc, ran.out) == (0, "configmap/c1 created\n")
    ran = await kubectl("create", "namespace", "team")
    assert (ran.rc, ran.out) == (0, "namespace/team created\n")
    secret = cluster.store.get("secrets", "default", "s1")
    assert secret is not None and secret["data"] == {"a": "Yg==", "c": "ZGQ="}
    configmap = cluster.store.get("configmaps", "default", "c1")
    assert configmap is not None and configmap["data"] == {"x": "y"}
    assert cluster.store.get("namespaces", "", "team") is not None
