"""PATCH flavours: merge, strategic merge (as kubectl apply sends it) and JSON patch."""

from __future__ import annotations

from typing import Any

import pytest

from kuberunner.cluster.api.patching import PatchError, json_patch, merge_patch, strategic_merge_patch

POD: dict[str, Any] = {
    "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
    "spec": {
        "containers": [
            {"name": "build", "image": "alpine:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "helper", "image": "busybox:1"},
        ],
        "volumes": [{"name": "scripts", "secret": {"secretName": "s"}}],
    },
}


def test_merge_patch_merges_maps_deletes_nulls_and_replaces_lists() -> None:
    out = merge_patch(
        POD, {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"containers": [{"name": "only"}]}}
    )
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert out["spec"]["containers"] == [{"name": "only"}]
    assert POD["metadata"]["labels"] == {"a": "1", "b": "2"}  # input untouched


def test_strategic_merge_merges_containers_by_name() -> None:
    out = strategic_merge_patch(POD, {"spec": {"containers": [{"name": "build", "image": "alpine:2"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["build", "helper"]
    assert out["spec"]["containers"][0] == {
        "name": "build",
        "image": "alpine:2",
        "env": [{"name": "A", "value": "1"}],
    }


def test_strategic_merge_as_kubectl_apply_sends_it() -> None:
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "$setElementOrder/containers": [{"name": "build"}, {"name": "helper"}],
            "containers": [
                {
                    "name": "build",
                    "env": [{"name": "B", "value": "2"}],
                    "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                }
            ],
        },
    }
    out = strategic_merge_patch(POD, patch)
    assert out["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert "$setElementOrder/containers" not in out["spec"]
    assert out["metadata"]["annotations"] == {"kubectl.kubernetes.io/last-applied-configuration": "{}"}


def test_strategic_merge_directives() -> None:
    out = strategic_merge_patch(
        POD,
        {
            "spec": {"containers": [{"name": "helper", "$patch": "delete"}]},
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"], "finalizers": ["y"]},
        },
    )
    assert [c["name"] for c in out["spec"]["containers"]] == ["build"]
    assert out["metadata"]["finalizers"] == ["y"]
    replaced = strategic_merge_patch(POD, {"metadata": {"labels": {"$patch": "replace", "z": "9"}}})
    assert replaced["metadata"]["labels"] == {"z": "9"}


def test_strategic_merge_requires_merge_key() -> None:
    with pytest.raises(PatchError, match="merge key: name"):
        strategic_merge_patch(POD, {"spec": {"containers": [{"image": "x"}]}})


def test_json_patch_operations() -> None:
    out = json_patch(
        POD,
        [
            {"op": "add", "path": "/metadata/labels/c", "value": "3"},
            {"op": "replace", "path": "/spec/containers/0/image", "value": "alpine:3"},
            {"op": "remove", "path": "/spec/containers/1"},
            {"op": "test", "path": "/metadata/name", "value": "p"},
            {"op": "copy", "from": "/metadata/labels/a", "path": "/metadata/labels/d"},
            {"op": "move", "from": "/metadata/labels/b", "path": "/metadata/labels/e"},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "z"},
            {"op": "add", "path": "/metadata/labels/a~1b", "value": "slash"},
        ],
    )
    assert out["metadata"]["labels"] == {"a": "1", "c": "3", "d": "1", "e": "2", "a/b": "slash"}
    assert out["spec"]["containers"] == [
        {"name": "build", "image": "alpine:3", "env": [{"name": "A", "value": "1"}]}
    ]
    assert out["metadata"]["finalizers"] == ["x", "z"]


@pytest.mark.parametrize(
    ("ops", "code"),
    [
        ([{"op": "test", "path": "/metadata/name", "value": "q"}], 422),
        ([{"op": "replace", "path": "/spec/nope", "value": 1}], 422),
        ([{"op": "remove", "path": "/spec/containers/9"}], 422),
        ([{"op": "frobnicate", "path": "/x"}], 400),
        ({"op": "add"}, 400),
        ([{"op": "add", "path": "no-slash", "value": 1}], 400),
    ],
    ids=["test-fails", "replace-missing", "remove-out-of-range", "unknown-op", "not-a-list", "bad-pointer"],
)
def test_json_patch_errors(ops: Any, code: int) -> None:
    with pytest.raises(PatchError) as caught:
        json_patch(POD, ops)
    assert caught.value.code == code
