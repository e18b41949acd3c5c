"""The official `kubernetes` Python client (sync, so run in a thread) against the server."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from kuberunner.cluster.server import EmbeddedCluster
from tests.cluster.api_helpers import FakeKubelet

T = TypeVar("T")
# The generated client is partly untyped; the tests treat its objects as Any.
load_kube_config: Any = config.load_kube_config
Watch: Any = watch.Watch


@pytest.fixture
def core(cluster: EmbeddedCluster) -> Iterator[Any]:
    configuration = client.Configuration()
    load_kube_config(config_file=str(cluster.kubeconfig_path), client_configuration=configuration)
    with client.ApiClient(configuration) as api_client:
        yield client.CoreV1Api(api_client)


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def pod(name: str) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="busybox", command=["sleep", "9"])]
        ),
    )


async def test_pod_create_read_list_delete(core: Any, fake_kubelet: FakeKubelet) -> None:
    created = await call(core.create_namespaced_pod, "default", pod("web"))
    assert created.spec.node_name == "kuberunner-node"
    assert created.spec.restart_policy == "Always"
    read = await call(core.read_namespaced_pod, "web", "default")
    assert read.status.phase == "Running"
    listed = await call(core.list_namespaced_pod, "default", label_selector="app in (web)")
    assert [p.metadata.name for p in listed.items] == ["web"]
    assert (await call(core.list_namespaced_pod, "default", label_selector="app=other")).items == []
    everywhere = await call(core.list_pod_for_all_namespaces)
    assert [p.metadata.name for p in everywhere.items] == ["web"]
    deleted = await call(core.delete_namespaced_pod, "web", "default", grace_period_seconds=0)
    assert deleted.metadata.name == "web"
    assert fake_kubelet.deleting == [("web", 0)]
    with pytest.raises(ApiException) as caught:
        await call(core.read_namespaced_pod, "web", "default")
    assert caught.value.status == 404
    assert json.loads(str(caught.value.body))["message"] == 'pods "web" not found'


async def test_secret_and_configmap(core: Any) -> None:
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"token": "abc"})
    created = await call(core.create_namespaced_secret, "default", secret)
    assert created.data == {"token": base64.b64encode(b"abc").decode()}
    assert created.type == "Opaque"
    with pytest.raises(ApiException) as caught:
        await call(core.create_namespaced_secret, "default", secret)
    assert (caught.value.status, json.loads(str(caught.value.body))["reason"]) == (409, "AlreadyExists")
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"k": "v"})
    await call(core.create_namespaced_config_map, "default", cm)
    assert (await call(core.read_namespaced_config_map, "c", "default")).data == {"k": "v"}
    names = [c.metadata.name for c in (await call(core.list_namespaced_config_map, "default")).items]
    assert names == ["c", "kube-root-ca.crt"]
    # The generated client declares `object` here, so the Status comes back as a dict.
    status = await call(core.delete_namespaced_config_map, "c", "default")
    assert status["status"] == "Success"
    await call(core.delete_namespaced_secret, "s", "default")
    assert (await call(core.list_namespaced_secret, "default")).items == []


async def test_watch_from_resource_version_with_timeout(core: Any) -> None:
    start = (await call(core.list_namespaced_config_map, "default")).metadata.resource_version
    for name in ("a", "b"):
        await call(
            core.create_namespaced_config_map,
            "default",
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name)),
        )
    await call(core.delete_namespaced_config_map, "a", "default")

    def collect() -> list[tuple[str, str]]:
        stream = Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=1
        )
        return [(e["type"], e["object"].metadata.name) for e in stream]

    assert await call(collect) == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]


async def test_watch_with_too_old_version_raises_410(core: Any, cluster: EmbeddedCluster) -> None:
    start = (await call(core.list_namespaced_config_map, "default")).metadata.resource_version
    for i in range(1100):
        await cluster.store.create("configmaps", "default", {"metadata": {"name": f"c{i}"}})

    def watch_old() -> None:
        for _ in Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=5
        ):
            pass

    with pytest.raises(ApiException) as caught:
        await call(watch_old)
    assert caught.value.status == 410


async def test_validation_error_body(core: Any) -> None:
    bad = pod("Bad_Name")
    with pytest.raises(ApiException) as caught:
        await call(core.create_namespaced_pod, "default", bad)
    body = json.loads(str(caught.value.body))
    assert (caught.value.status, body["reason"], body["details"]["kind"]) == (422, "Invalid", "Pod")
    assert body["details"]["causes"][0]["field"] == "metadata.name"


async def test_requests_without_the_token_get_401(cluster: EmbeddedCluster) -> None:
    configuration = client.Configuration()
    load_kube_config(config_file=str(cluster.kubeconfig_path), client_configuration=configuration)
    configuration.api_key = {}
    with client.ApiClient(configuration) as api_client, pytest.raises(ApiException) as caught:
        await call(client.CoreV1Api(api_client).list_namespaced_pod, "default")
    assert caught.value.status == 401
    assert json.loads(str(caught.value.body))["reason"] == "Unauthorized"
