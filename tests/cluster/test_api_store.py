"""The store without HTTP: resourceVersions, names, pod scheduling, deletion, watches, events, GC."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from kuberunner.cluster.api.selectors import parse_field_selector, parse_label_selector
from kuberunner.cluster.api.store import Store
from kuberunner.cluster.api.watch import Expired, Subscription
from kuberunner.cluster.status import StatusError
from tests.cluster.api_helpers import FakeKubelet, pod_manifest


@pytest.fixture
def store() -> Store:
    s = Store(node_name="node-1", history_size=16)
    s.kubelet = FakeKubelet(s, delete_delay=0.01)
    return s


def kubelet(store: Store) -> FakeKubelet:
    assert isinstance(store.kubelet, FakeKubelet)
    return store.kubelet


async def take(sub: Subscription, count: int) -> list[tuple[str, str]]:
    """The next `count` events as (type, name); fails if more than that were queued."""
    seen: list[tuple[str, str]] = []
    for _ in range(count):
        event = await asyncio.wait_for(sub.next(), 2)
        assert event is not None
        seen.append((event.type, event.object["metadata"]["name"]))
    assert sub.queued == 0, f"more events than expected after {seen}"
    return seen


async def test_create_pod_schedules_and_hands_it_to_the_kubelet(store: Store) -> None:
    created = await store.create("pods", "default", pod_manifest("web"))
    meta, status = created["metadata"], created["status"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert created["spec"]["nodeName"] == "node-1"
    assert (status["phase"], status["podIP"], status["hostIP"], status["qosClass"]) == (
        "Pending",
        "127.0.0.1",
        "127.0.0.1",
        "BestEffort",
    )
    assert status["conditions"][0]["type"] == "PodScheduled"
    assert kubelet(store).added == ["web"]
    stored = store.get("pods", "default", "web")
    assert stored is not None and stored["status"]["phase"] == "Running"
    assert int(stored["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])


async def test_resource_versions_grow_across_resources_and_names_are_generated(store: Store) -> None:
    rvs = []
    for i in range(3):
        cm = await store.create(
            "configmaps", "default", {"metadata": {"generateName": "cm-"}, "data": {"i": str(i)}}
        )
        assert re.fullmatch(r"cm-[bcdfghjklmnpqrstvwxz2456789]{5}", cm["metadata"]["name"])
        rvs.append(int(cm["metadata"]["resourceVersion"]))
        secret = await store.create("secrets", "default", {"metadata": {"name": f"s{i}"}})
        rvs.append(int(secret["metadata"]["resourceVersion"]))
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)
    with pytest.raises(StatusError) as caught:
        await store.create("secrets", "default", {"metadata": {"name": "s0"}})
    assert (caught.value.code, caught.value.message) == (409, 'secrets "s0" already exists')
    with pytest.raises(StatusError) as caught:
        await store.create("secrets", "nowhere", {"metadata": {"name": "s0"}})
    assert caught.value.message == 'namespaces "nowhere" not found'


async def test_graceful_delete_marks_then_removes(store: Store) -> None:
    await store.create("pods", "default", pod_manifest("web"))
    _, sub = store.watch("pods", "default", since=store.resource_version)
    marked = await store.delete("pods", "default", "web")
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert "deletionTimestamp" in marked["metadata"]
    assert kubelet(store).deleting == [("web", 30)]
    assert store.get("pods", "default", "web") is not None
    # The fake kubelet removes the pod shortly after.
    assert await take(sub, 2) == [("MODIFIED", "web"), ("DELETED", "web")]
    assert store.get("pods", "default", "web") is None


async def test_zero_grace_and_finished_pods_go_at_once(store: Store) -> None:
    await store.create("pods", "default", pod_manifest("a"))
    await store.create("pods", "default", pod_manifest("b"))
    store.update_pod("default", "b", lambda p: p["status"].update(phase="Succeeded"))
    _, sub = store.watch("pods", "default", since=store.resource_version)
    last = await store.delete("pods", "default", "a", grace=0)
    assert last["metadata"]["name"] == "a"
    await store.delete("pods", "default", "b", grace=10)
    assert await take(sub, 2) == [("DELETED", "a"), ("DELETED", "b")]
    assert kubelet(store).deleting == [("a", 0), ("b", 0)]


async def test_watch_replays_from_a_resource_version_and_expires_old_ones(store: Store) -> None:
    first = await store.create("configmaps", "default", {"metadata": {"name": "c0"}})
    for i in range(1, 4):
        await store.create("configmaps", "default", {"metadata": {"name": f"c{i}"}})
    _, sub = store.watch("configmaps", "default", since=int(first["metadata"]["resourceVersion"]))
    assert await take(sub, 3) == [("ADDED", "c1"), ("ADDED", "c2"), ("ADDED", "c3")]
    for i in range(4, 40):
        await store.create("configmaps", "default", {"metadata": {"name": f"c{i}"}})
    with pytest.raises(Expired) as caught:
        store.watch("configmaps", "default", since=int(first["metadata"]["resourceVersion"]))
    assert str(caught.value).startswith(f"too old resource version: {first['metadata']['resourceVersion']} (")


async def test_watch_without_version_starts_with_the_current_objects(store: Store) -> None:
    await store.create("configmaps", "default", {"metadata": {"name": "a", "labels": {"x": "1"}}})
    await store.create("configmaps", "default", {"metadata": {"name": "b"}})
    initial, _ = store.watch("configmaps", "default", labels=parse_label_selector("x=1"))
    assert [o["metadata"]["name"] for o in initial] == ["a"]


async def test_selector_crossings_become_added_and_deleted(store: Store) -> None:
    await store.create("configmaps", "default", {"metadata": {"name": "a"}})
    _, sub = store.watch(
        "configmaps", "default", labels=parse_label_selector("x=1"), since=store.resource_version
    )
    await store.patch(
        "configmaps", "default", "a", "application/merge-patch+json", {"metadata": {"labels": {"x": "1"}}}
    )
    await store.patch("configmaps", "default", "a", "application/merge-patch+json", {"data": {"k": "v"}})
    await store.patch(
        "configmaps", "default", "a", "application/merge-patch+json", {"metadata": {"labels": None}}
    )
    assert await take(sub, 3) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


async def test_field_selector_watch_sees_only_its_object(store: Store) -> None:
    _, sub = store.watch(
        "pods",
        "default",
        fields=parse_field_selector("metadata.name=b", "pods"),
        since=store.resource_version,
    )
    await store.create("pods", "default", pod_manifest("a"))
    await store.create("pods", "default", pod_manifest("b"))
    assert await take(sub, 2) == [("ADDED", "b"), ("MODIFIED", "b")]


async def test_noop_patch_keeps_the_resource_version(store: Store) -> None:
    cm = await store.create("configmaps", "default", {"metadata": {"name": "a"}, "data": {"k": "v"}})
    same, created = await store.patch(
        "configmaps", "default", "a", "application/strategic-merge-patch+json", {"data": {"k": "v"}}
    )
    assert not created
    assert same["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]


async def test_events_are_recorded_and_aggregated(store: Store) -> None:
    pod = await store.create("pods", "default", pod_manifest("web"))
    store.record_event(pod, reason="Started", message="Started container main")
    store.record_event(pod, reason="Started", message="Started container main")
    store.record_event(pod, reason="Killing", message="Stopping container main", type_="Warning")
    events, _ = store.list_objects(
        "events",
        "default",
        fields=parse_field_selector(
            f"involvedObject.uid={pod['metadata']['uid']},involvedObject.kind=Pod", "events"
        ),
    )
    summary = sorted((e["reason"], e["count"], e["type"], e["source"]["component"]) for e in events)
    assert summary == [("Killing", 1, "Warning", "kubelet"), ("Started", 2, "Normal", "kubelet")]


async def test_event_count_is_bounded() -> None:
    store = Store(max_events=5)
    for i in range(8):
        store.record_event(
            {"kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "u"}},
            reason="R",
            message=str(i),
        )
    events, _ = store.list_objects("events", "default")
    assert sorted(e["message"] for e in events) == ["3", "4", "5", "6", "7"]


async def test_objects_owned_by_a_removed_pod_are_collected(store: Store) -> None:
    pod = await store.create("pods", "default", pod_manifest("job"))
    owner = {"apiVersion": "v1", "kind": "Pod", "name": "job", "uid": pod["metadata"]["uid"]}
    await store.create("secrets", "default", {"metadata": {"name": "scripts", "ownerReferences": [owner]}})
    await store.create("secrets", "default", {"metadata": {"name": "unrelated"}})
    await store.delete("pods", "default", "job", grace=0)
    names = [s["metadata"]["name"] for s in store.list_objects("secrets", "default")[0]]
    assert names == ["unrelated"]


async def test_update_pod_and_remove_pod_for_the_kubelet(store: Store) -> None:
    pod = await store.create("pods", "default", pod_manifest("web"))
    assert store.update_pod("default", "gone", lambda p: None) is None
    before = store.resource_version
    store.update_pod("default", "web", lambda p: None)
    assert store.resource_version == before  # no change, no event
    store.remove_pod("default", "web", "another-uid")
    assert store.get("pods", "default", "web") is not None
    store.remove_pod("default", "web", pod["metadata"]["uid"])
    assert store.get("pods", "default", "web") is None


async def test_namespaces(store: Store) -> None:
    names = [n["metadata"]["name"] for n in store.list_objects("namespaces", None)[0]]
    assert "default" in names
    await store.create("namespaces", None, {"metadata": {"name": "team"}})
    await store.create("pods", "team", pod_manifest("p"))
    _, sub = store.watch("namespaces", None, since=store.resource_version)
    answer: dict[str, Any] = await store.delete("namespaces", "", "team")
    assert (answer["kind"], answer["status"]) == ("Namespace", {"phase": "Terminating"})
    # The pod gets its own grace period; the namespace waits for it, refusing new content.
    pod = store.get("pods", "team", "p")
    assert pod is not None and pod["metadata"]["deletionGracePeriodSeconds"] == 30
    with pytest.raises(StatusError) as refused:
        await store.create("configmaps", "team", {"metadata": {"name": "late"}})
    assert (refused.value.code, refused.value.message) == (
        403,
        'configmaps "late" is forbidden: unable to create new content in namespace team '
        "because it is being terminated",
    )
    assert await take(sub, 2) == [("MODIFIED", "team"), ("DELETED", "team")]
    assert store.get("pods", "team", "p") is None
    with pytest.raises(StatusError) as caught:
        await store.delete("namespaces", "", "default")
    assert caught.value.code == 403
