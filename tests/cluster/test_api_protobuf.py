"""The protobuf envelope decoder, fed hand-built bytes."""

from __future__ import annotations

import pytest

from kuberunner.cluster.api.protobuf import ProtobufError, decode


def varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def entry(key: str, value: bytes) -> bytes:
    return field(1, key.encode()) + field(2, value)


def envelope(kind: str, raw: bytes) -> bytes:
    type_meta = field(1, b"v1") + field(2, kind.encode())
    return b"k8s\x00" + field(1, type_meta) + field(2, raw) + field(4, b"application/vnd.kubernetes.protobuf")


def test_secret() -> None:
    meta = field(1, b"s1") + field(3, b"default") + field(11, entry("app", b"web")) + field(8, b"")
    raw = (
        field(1, meta)
        + field(2, entry("a", b"\x00\xff"))
        + field(3, b"Opaque")
        + field(5, 1)
        + field(99, b"x")
    )
    assert decode("secrets", envelope("Secret", raw)) == {
        "kind": "Secret",
        "apiVersion": "v1",
        "type": "Opaque",
        "immutable": True,
        "data": {"a": "AP8="},
        "metadata": {"name": "s1", "namespace": "default", "labels": {"app": "web"}},
    }


def test_configmap_and_owner_references() -> None:
    owner = field(1, b"Pod") + field(3, b"job") + field(4, b"uid-1") + field(5, b"v1") + field(6, 1)
    raw = field(1, field(1, b"c") + field(13, owner) + field(14, b"f1")) + field(
        2, entry("k", "välue".encode())
    )
    obj = decode("configmaps", envelope("ConfigMap", raw))
    assert obj["data"] == {"k": "välue"}
    assert obj["metadata"]["ownerReferences"] == [
        {"kind": "Pod", "name": "job", "uid": "uid-1", "apiVersion": "v1", "controller": True}
    ]
    assert obj["metadata"]["finalizers"] == ["f1"]


@pytest.mark.parametrize(
    ("resource", "body"),
    [
        ("secrets", b"{}"),
        ("secrets", b"k8s\x00" + b"\x12\x05ab"),
        ("secrets", b"k8s\x00\x12\x02" + b"\x08\x80"),
        ("pods", envelope("Pod", b"")),
    ],
    ids=["no-magic", "truncated-field", "truncated-varint", "unsupported-kind"],
)
def test_bad_bodies(resource: str, body: bytes) -> None:
    with pytest.raises(ProtobufError):
        decode(resource, body)
