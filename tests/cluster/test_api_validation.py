"""Decoding and validation errors shaped as the real API server's (400 BadRequest, 422 Invalid)."""

from __future__ import annotations

from typing import Any

import pytest

from kuberunner.cluster.api import admission
from kuberunner.cluster.status import StatusError


def create(resource: str, body: Any) -> dict[str, Any]:
    obj = admission.decode(resource, body)
    admission.check_namespace(obj, "default")
    return admission.prepare_new(resource, obj)


def pod(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox"}]}
    base.update(spec)
    return {"metadata": {"name": "p1"}, "spec": base}


def status_of(resource: str, body: Any) -> StatusError:
    with pytest.raises(StatusError) as caught:
        create(resource, body)
    return caught.value


def test_missing_containers_is_422_with_cause() -> None:
    err = status_of("pods", {"metadata": {"name": "p1"}, "spec": {}})
    assert err.code == 422
    assert err.body()["reason"] == "Invalid"
    assert err.message == 'Pod "p1" is invalid: spec.containers: Required value'
    assert err.details == {
        "name": "p1",
        "kind": "Pod",
        "causes": [{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}],
    }


def test_several_errors_are_listed_in_brackets() -> None:
    err = status_of(
        "pods",
        {
            "metadata": {"name": "Bad_Name"},
            "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "a"}]},
        },
    )
    assert err.message.startswith(
        'Pod "Bad_Name" is invalid: [metadata.name: Invalid value: "Bad_Name": '
        "a lowercase RFC 1123 subdomain must consist of"
    )
    fields = [c["field"] for c in err.details["causes"]]  # type: ignore[index]
    assert fields == ["metadata.name", "spec.containers[1].name", "spec.containers[1].image"]
    assert 'spec.containers[1].name: Duplicate value: "a"' in err.message


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (
            {"containers": [{"name": "Main", "image": "x"}]},
            "spec.containers[0].name",
            'Invalid value: "Main": a lowercase RFC 1123 label must consist of',
        ),
        ({"containers": [{"image": "x"}]}, "spec.containers[0].name", "Required value"),
        ({"containers": [{"name": "c"}]}, "spec.containers[0].image", "Required value"),
        (
            {"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]},
            "spec.containers[0].volumeMounts[0].name",
            'Not found: "v"',
        ),
        (
            {"restartPolicy": "Sometimes"},
            "spec.restartPolicy",
            'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
        ),
        (
            {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]},
            "spec.volumes[1].name",
            'Duplicate value: "v"',
        ),
        (
            {"initContainers": [{"name": "main", "image": "x"}]},
            "spec.containers[0].name",
            'Duplicate value: "main"',
        ),
    ],
    ids=[
        "container-name",
        "container-name-missing",
        "image-missing",
        "mount-without-volume",
        "restart-policy",
        "duplicate-volume",
        "init-and-app-name-clash",
    ],
)
def test_pod_field_errors(spec: dict[str, Any], field: str, message: str) -> None:
    body = pod(**spec)
    if "containers" in spec:
        body["spec"]["containers"] = spec["containers"]
    err = status_of("pods", body)
    assert err.code == 422
    causes = err.details["causes"]  # type: ignore[index]
    assert any(c["field"] == field and c["message"].startswith(message) for c in causes), causes


def test_wrong_json_types_are_400_like_the_go_decoder() -> None:
    err = status_of("pods", {"metadata": {"name": "p1"}, "spec": {"containers": "nope"}})
    assert err.code == 400
    assert err.message == (
        'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string into '
        "Go struct field PodSpec.spec.containers of type []v1.Container"
    )
    err = status_of("pods", {"metadata": {"name": "p1", "labels": {"a": 1}}, "spec": {}})
    assert "cannot unmarshal number into Go struct field ObjectMeta.metadata.labels" in err.message


def test_kind_from_url_and_mismatch() -> None:
    assert create("configmaps", {"metadata": {"name": "c"}, "data": {"k": "v"}})["kind"] == "ConfigMap"
    err = status_of("pods", {"kind": "ConfigMap", "metadata": {"name": "c"}})
    assert (err.code, err.reason) == (400, "BadRequest")
    assert "ConfigMap" in err.message and "Pod" in err.message


def test_generate_name_is_validated_with_a_suffix() -> None:
    assert create("pods", {"metadata": {"generateName": "job-"}, "spec": pod()["spec"]})["metadata"] == {
        "generateName": "job-",
        "generation": 1,
        "namespace": "default",
    }
    err = status_of("pods", {"metadata": {}, "spec": pod()["spec"]})
    assert err.message == 'Pod "" is invalid: metadata.name: Required value: name or generateName is required'


def test_secret_data_and_string_data() -> None:
    secret = create("secrets", {"metadata": {"name": "s"}, "data": {"a": "YQ=="}, "stringData": {"b": "bee"}})
    assert secret["data"] == {"a": "YQ==", "b": "YmVl"}
    assert "stringData" not in secret
    assert secret["type"] == "Opaque"
    err = status_of("secrets", {"metadata": {"name": "s"}, "data": {"a": "not base64!"}})
    assert (err.code, err.reason) == (400, "BadRequest")
    assert err.message.startswith('Secret in version "v1" cannot be handled as a Secret: illegal base64 data')
    err = status_of("configmaps", {"metadata": {"name": "c"}, "data": {"bad key": "v"}})
    assert err.details["causes"][0]["field"] == "data[bad key]"  # type: ignore[index]


def test_pod_defaults() -> None:
    created = create(
        "pods",
        pod(containers=[{"name": "main", "image": "busybox"}, {"name": "side", "image": "busybox:1.36"}]),
    )
    spec = created["spec"]
    assert (
        spec["restartPolicy"],
        spec["terminationGracePeriodSeconds"],
        spec["dnsPolicy"],
        spec["schedulerName"],
    ) == ("Always", 30, "ClusterFirst", "default-scheduler")
    main, side = spec["containers"]
    assert (main["imagePullPolicy"], side["imagePullPolicy"]) == ("Always", "IfNotPresent")
    assert main["terminationMessagePath"] == "/dev/termination-log"


def test_pod_update_may_change_images_only() -> None:
    current = create("pods", pod())
    current["metadata"].update(uid="u", resourceVersion="5", creationTimestamp="2025-01-01T00:00:00Z")
    changed = admission.decode(
        "pods",
        {
            **current,
            "spec": {
                **current["spec"],
                "containers": [{**current["spec"]["containers"][0], "image": "alpine"}],
            },
        },
    )
    assert (
        admission.prepare_update("pods", current, changed, subresource=None)["spec"]["containers"][0]["image"]
        == "alpine"
    )
    bad = admission.decode("pods", {**current, "spec": {**current["spec"], "restartPolicy": "Never"}})
    with pytest.raises(StatusError) as caught:
        admission.prepare_update("pods", current, bad, subresource=None)
    assert caught.value.message.startswith(
        'Pod "p1" is invalid: spec: Forbidden: pod updates may not change fields'
    )
    stale = admission.decode("pods", {**current, "metadata": {**current["metadata"], "resourceVersion": "4"}})
    with pytest.raises(StatusError) as caught:
        admission.prepare_update("pods", current, stale, subresource=None)
    assert (caught.value.code, caught.value.reason) == (409, "Conflict")
    assert caught.value.message == (
        'Operation cannot be fulfilled on pods "p1": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
