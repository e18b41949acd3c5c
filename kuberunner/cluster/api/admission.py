"""Turn a client's object into what the store keeps: decode checks, defaults, validation.

The order is the real API server's: decode (wrong types and unknown kinds are 400 BadRequest),
default, validate (422 Invalid with causes), then, for updates, keep every server-owned field
(identity, timestamps, the status of a pod unless the status subresource is written) from the
stored object. Pure: raises `StatusError`, touches no store.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from kuberunner.cluster.api import omitempty, pods, shapes, validation
from kuberunner.cluster.api.kinds import RESOURCES
from kuberunner.cluster.status import StatusError, bad_request, invalid

RawObject = dict[str, Any]

# Metadata the server owns: a client can neither set it on create nor change it on update.
_SERVER_META = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "resourceVersion",
    "generation",
    "managedFields",
    "selfLink",
)


def method_not_allowed() -> StatusError:
    return StatusError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {}
    )


def cannot_handle(resource: str, detail: str) -> StatusError:
    kind = RESOURCES[resource].kind
    return bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: {detail}')


def decode(resource: str, body: Any) -> RawObject:
    """Type-check the body and default its kind/apiVersion from the URL."""
    kind = RESOURCES[resource].kind
    try:
        shapes.check(resource, body)
    except shapes.ShapeError as exc:
        raise cannot_handle(resource, str(exc)) from exc
    obj: RawObject = copy.deepcopy(body)
    omitempty.drop_false_flags(kind, obj)
    sent_kind = obj.get("kind")
    sent_version = obj.get("apiVersion")
    if sent_kind not in (None, "") and sent_kind != kind:
        raise bad_request(
            f"the kind in the data ({sent_kind}) does not match the expected kind ({kind}) for this URL"
        )
    if sent_version not in (None, "", "v1"):
        raise bad_request(
            f"the API version in the data ({sent_version}) does not match the expected API version (v1)"
        )
    obj["kind"] = kind
    obj["apiVersion"] = "v1"
    if not isinstance(obj.get("metadata"), dict):
        obj["metadata"] = {}
    return obj


def check_namespace(obj: RawObject, namespace: str | None) -> None:
    meta = obj["metadata"]
    if namespace is None:
        meta.pop("namespace", None)
        return
    sent = meta.get("namespace")
    if sent and sent != namespace:
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    meta["namespace"] = namespace


def _normalise_secret(secret: RawObject) -> None:
    data = secret.get("data") or {}
    for key, value in data.items():
        if validation.decode_base64(value) is None:
            raise cannot_handle("secrets", f"illegal base64 data in data[{key}]")
    string_data = secret.pop("stringData", None) or {}
    if string_data:
        for key, value in string_data.items():
            data[key] = base64.b64encode(value.encode()).decode("ascii")
    if data or "data" in secret:
        secret["data"] = data
    if not secret.get("type"):
        secret["type"] = "Opaque"


def _raise_invalid(obj: RawObject, causes: list[dict[str, str]]) -> None:
    if causes:
        meta = obj.get("metadata") or {}
        name = meta.get("name") or meta.get("generateName") or ""
        raise invalid(obj["kind"], name, causes)


def prepare_new(resource: str, obj: RawObject) -> RawObject:
    """Defaults and validation for a create; `obj` comes from `decode` with its namespace set."""
    meta = obj["metadata"]
    for key in _SERVER_META:
        meta.pop(key, None)
    if resource == "secrets":
        _normalise_secret(obj)
    if resource == "pods":
        obj.pop("status", None)
        pods.apply_defaults(obj)
        meta["generation"] = 1
    if resource == "namespaces":
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
        if meta.get("name"):
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    checked = obj
    if not meta.get("name") and meta.get("generateName"):
        # Validate as if the generated suffix were there, as the real server does.
        checked = copy.deepcopy(obj)
        checked["metadata"]["name"] = meta["generateName"] + "x"
    _raise_invalid(obj, validation.validate(resource, checked))
    return obj


def prepare_update(
    resource: str, current: RawObject, new: RawObject, *, subresource: str | None
) -> RawObject:
    """The object to store for a PUT or PATCH of `current`; `new` has passed `decode`."""
    meta = new["metadata"]
    old_meta = current["metadata"]
    name = old_meta["name"]
    if meta.get("name") and meta["name"] != name:
        raise bad_request(
            f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
        )
    sent_rv = meta.get("resourceVersion")
    if sent_rv and sent_rv != old_meta.get("resourceVersion"):
        raise StatusError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            {"name": name, "kind": resource},
        )
    sent_uid = meta.get("uid")
    if sent_uid and sent_uid != old_meta.get("uid"):
        raise StatusError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {resource} "{name}": Precondition failed: '
            f"UID in precondition: {sent_uid}, UID in object meta: {old_meta.get('uid')}",
            {"name": name, "kind": resource},
        )
    meta["name"] = name
    if "namespace" in old_meta:
        meta["namespace"] = old_meta["namespace"]
    for key in _SERVER_META:
        if key in old_meta:
            meta[key] = copy.deepcopy(old_meta[key])
        else:
            meta.pop(key, None)
    if subresource == "status":
        # Status writes change the status only (ResetObjectMetaForStatus + keep the spec).
        kept = copy.deepcopy(current)
        kept["status"] = new.get("status") or {}
        return kept
    if resource == "secrets":
        _normalise_secret(new)
    if resource == "pods":
        new["status"] = copy.deepcopy(current.get("status") or {})
        pods.apply_defaults(new)
        if new.get("spec") != current.get("spec") and isinstance(meta.get("generation"), int):
            meta["generation"] += 1  # the pod registry counts spec changes
    if resource == "namespaces":
        new["spec"] = copy.deepcopy(current.get("spec") or {})
        new["status"] = copy.deepcopy(current.get("status") or {})
    causes = validation.validate(resource, new)
    if resource == "pods":
        causes += validation.validate_pod_update(current, new)
    if resource in ("secrets", "configmaps") and current.get("immutable"):
        for field in ("data", "binaryData", "immutable"):
            if new.get(field) != current.get(field):
                causes.append(validation.forbidden(field, "field is immutable when `immutable` is set"))
    _raise_invalid(new, causes)
    return new


def check_preconditions(resource: str, current: RawObject, preconditions: dict[str, Any]) -> None:
    """DeleteOptions.preconditions: uid and resourceVersion must match the stored object."""
    meta = current["metadata"]
    for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        want = preconditions.get(field)
        if want and want != meta.get(field):
            raise StatusError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource} "{meta["name"]}": Precondition failed: '
                f"{label} in precondition: {want}, {label} in object meta: {meta.get(field)}",
                {"name": meta["name"], "kind": resource},
            )


def success_status(resource: str, obj: RawObject) -> RawObject:
    """The body of a successful DELETE of anything but a pod."""
    meta = obj["metadata"]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": meta["name"], "kind": resource, "uid": meta.get("uid", "")},
    }
