"""Label and field selectors: the grammar kubectl and the clients send, and what each one matches."""

from __future__ import annotations

import pytest

from kuberunner.cluster.api.selectors import SelectorError, parse_field_selector, parse_label_selector


def obj(labels: dict[str, str] | None = None, **fields: object) -> dict[str, object]:
    return {"metadata": {"name": "p1", "namespace": "default", "labels": labels or {}}, **fields}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app=web", {"app": "db"}, False),
        ("app!=web", {"app": "db"}, True),
        ("app!=web", {}, True),
        ("app in (web, db)", {"app": "db"}, True),
        ("app in (web,db)", {"app": "x"}, False),
        ("app notin (web)", {}, True),
        ("app notin (web)", {"app": "web"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": "web"}, False),
        ("!app", {}, True),
        ("app=web,tier in (front),!legacy", {"app": "web", "tier": "front"}, True),
        ("app=web,tier in (front),!legacy", {"app": "web", "tier": "front", "legacy": "1"}, False),
        ("kuberunner.io/job=42", {"kuberunner.io/job": "42"}, True),
        ("n>3", {"n": "4"}, True),
        ("n<3", {"n": "4"}, False),
        ("", {"anything": "x"}, True),
        ("app=", {"app": ""}, True),
    ],
    ids=lambda v: repr(v),
)
def test_label_selector(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector).matches(obj(labels)) is expected


@pytest.mark.parametrize("bad", ["=web", "app in ()", "a b", "app=we b", "app,", "-app=x", "n>x"])
def test_label_selector_rejects(bad: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(bad)


def test_field_selector_name_and_namespace() -> None:
    sel = parse_field_selector("metadata.name=p1,metadata.namespace!=kube-system", "pods")
    assert sel.matches(obj())
    assert not parse_field_selector("metadata.name==p2", "pods").matches(obj())


def test_field_selector_events_involved_object() -> None:
    event = obj(
        involvedObject={"kind": "Pod", "name": "web", "uid": "u-1"},
        reason="Started",
        source={"component": "kubelet"},
    )
    sel = parse_field_selector(
        "involvedObject.name=web,involvedObject.kind=Pod,involvedObject.uid=u-1", "events"
    )
    assert sel.matches(event)
    assert parse_field_selector("source=kubelet,reason=Started", "events").matches(event)
    assert not parse_field_selector("involvedObject.uid=u-2", "events").matches(event)


def test_field_selector_pod_phase_and_escapes() -> None:
    pod = obj(status={"phase": "Running"}, spec={"hostNetwork": False})
    assert parse_field_selector("status.phase=Running,spec.hostNetwork=false", "pods").matches(pod)
    escaped = obj()
    escaped["metadata"]["name"] = "a,b=c"  # type: ignore[index]
    assert parse_field_selector(r"metadata.name=a\,b\=c", "pods").matches(escaped)


@pytest.mark.parametrize(
    ("text", "resource"),
    [
        ("spec.foo=x", "pods"),
        ("involvedObject.name=x", "pods"),
        ("metadata.name", "pods"),
        ("type=Opaque", "configmaps"),
    ],
)
def test_field_selector_rejects_unknown_fields(text: str, resource: str) -> None:
    with pytest.raises(SelectorError):
        parse_field_selector(text, resource)
