"""Field validation with the real API server's wording, for the objects this server stores.

Each validator returns a list of causes (`{"reason","message","field"}`, as metav1.StatusCause);
the caller raises `status.invalid(Kind, name, causes)` when the list is not empty. Type errors are
`shapes`' job and come first; defaulting (`pods.apply_defaults`) runs before validation, as in the
real server.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

Cause = dict[str, str]

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)
RESTART_POLICIES = ("Always", "OnFailure", "Never")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
VOLUME_SOURCES = (
    "emptyDir",
    "secret",
    "configMap",
    "hostPath",
    "projected",
    "downwardAPI",
    "persistentVolumeClaim",
    "ephemeral",
    "csi",
    "image",
)
POD_MUTABLE_NOTE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
    "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
    "previously negative)"
)


def required(field: str, detail: str = "") -> Cause:
    return {
        "reason": "FieldValueRequired",
        "message": "Required value" + (f": {detail}" if detail else ""),
        "field": field,
    }


def invalid_value(field: str, value: Any, detail: str) -> Cause:
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {shown}: {detail}", "field": field}


def duplicate(field: str, value: str) -> Cause:
    return {"reason": "FieldValueDuplicate", "message": f'Duplicate value: "{value}"', "field": field}


def not_found(field: str, value: str) -> Cause:
    return {"reason": "FieldValueNotFound", "message": f'Not found: "{value}"', "field": field}


def not_supported(field: str, value: str, supported: tuple[str, ...]) -> Cause:
    listed = ", ".join(f'"{s}"' for s in supported)
    return {
        "reason": "FieldValueNotSupported",
        "message": f'Unsupported value: "{value}": supported values: {listed}',
        "field": field,
    }


def forbidden(field: str, detail: str) -> Cause:
    return {"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}", "field": field}


def validate_name(name: str, *, label: bool = False, field: str = "metadata.name") -> list[Cause]:
    pattern, msg, limit = (DNS1123_LABEL, LABEL_MSG, 63) if label else (DNS1123_SUBDOMAIN, SUBDOMAIN_MSG, 253)
    causes: list[Cause] = []
    if len(name) > limit:
        causes.append(invalid_value(field, name, f"must be no more than {limit} characters"))
    if not pattern.match(name):
        causes.append(invalid_value(field, name, msg))
    return causes


def validate_metadata(meta: dict[str, Any]) -> list[Cause]:
    name = meta.get("name") or ""
    if not name:
        return [required("metadata.name", "name or generateName is required")]
    return validate_name(name)


def validate_pod(pod: dict[str, Any]) -> list[Cause]:
    causes = validate_metadata(pod.get("metadata") or {})
    spec = pod.get("spec") or {}
    volumes = spec.get("volumes") or []
    volume_names: set[str] = set()
    for i, vol in enumerate(volumes):
        where = f"spec.volumes[{i}]"
        vname = vol.get("name") or ""
        if not vname:
            causes.append(required(f"{where}.name"))
        else:
            causes += validate_name(vname, label=True, field=f"{where}.name")
            if vname in volume_names:
                causes.append(duplicate(f"{where}.name", vname))
            volume_names.add(vname)
        sources = [s for s in VOLUME_SOURCES if vol.get(s) is not None]
        if len(sources) > 1:
            causes.append(forbidden(f"{where}.{sources[1]}", "may not specify more than 1 volume type"))
        if "hostPath" in sources and not (vol["hostPath"].get("path") or ""):
            causes.append(required(f"{where}.hostPath.path"))
        if "secret" in sources and not (vol["secret"].get("secretName") or ""):
            causes.append(required(f"{where}.secret.secretName"))
        if "configMap" in sources and not (vol["configMap"].get("name") or ""):
            causes.append(required(f"{where}.configMap.name"))
    containers = spec.get("containers")
    if not containers:
        causes.append(required("spec.containers"))
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, ctr in enumerate(spec.get(group) or []):
            causes += _validate_container(ctr, f"spec.{group}[{i}]", seen, volume_names)
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in RESTART_POLICIES:
        causes.append(not_supported("spec.restartPolicy", policy, RESTART_POLICIES))
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace < 0:
        causes.append(
            invalid_value("spec.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0")
        )
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= 0:
        causes.append(
            invalid_value(
                "spec.activeDeadlineSeconds", deadline, "must be between 1 and 2147483647, inclusive"
            )
        )
    return causes


def _validate_container(ctr: dict[str, Any], where: str, seen: set[str], volumes: set[str]) -> list[Cause]:
    causes: list[Cause] = []
    name = ctr.get("name") or ""
    if not name:
        causes.append(required(f"{where}.name"))
    else:
        causes += validate_name(name, label=True, field=f"{where}.name")
        if name in seen:
            causes.append(duplicate(f"{where}.name", name))
        seen.add(name)
    if not (ctr.get("image") or ""):
        causes.append(required(f"{where}.image"))
    pull = ctr.get("imagePullPolicy")
    if pull is not None and pull not in PULL_POLICIES:
        causes.append(not_supported(f"{where}.imagePullPolicy", pull, PULL_POLICIES))
    mount_paths: set[str] = set()
    for j, mount in enumerate(ctr.get("volumeMounts") or []):
        mwhere = f"{where}.volumeMounts[{j}]"
        mname = mount.get("name") or ""
        if not mname:
            causes.append(required(f"{mwhere}.name"))
        elif mname not in volumes:
            causes.append(not_found(f"{mwhere}.name", mname))
        path = mount.get("mountPath") or ""
        if not path:
            causes.append(required(f"{mwhere}.mountPath"))
        elif path in mount_paths:
            causes.append(invalid_value(f"{mwhere}.mountPath", path, "must be unique"))
        mount_paths.add(path)
    for j, env in enumerate(ctr.get("env") or []):
        if not (env.get("name") or ""):
            causes.append(required(f"{where}.env[{j}].name"))
    return causes


def validate_pod_update(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    """Only images, activeDeadlineSeconds and tolerations may change in a running pod's spec."""

    def masked(spec: dict[str, Any]) -> dict[str, Any]:
        out = dict(spec)
        for group in ("containers", "initContainers"):
            out[group] = [{k: v for k, v in c.items() if k != "image"} for c in spec.get(group) or []]
        for key in ("activeDeadlineSeconds", "tolerations"):
            out.pop(key, None)
        return out

    if masked(old.get("spec") or {}) != masked(new.get("spec") or {}):
        return [forbidden("spec", POD_MUTABLE_NOTE)]
    return []


def validate_data_keys(data: dict[str, Any], field: str) -> list[Cause]:
    causes: list[Cause] = []
    for key in data:
        if not CONFIG_KEY.match(key) or key in (".", "..") or len(key) > 253:
            causes.append(invalid_value(f"{field}[{key}]", key, CONFIG_KEY_MSG))
    return causes


def decode_base64(value: str) -> bytes | None:
    """Strict standard base64, as Go's encoding/json decodes []byte; None when malformed."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


# Secret types whose data must hold one key, with the JSON the key must decode to (or None).
_TYPED_SECRETS = {
    "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
    "kubernetes.io/dockercfg": ".dockercfg",
}


def validate_secret(secret: dict[str, Any]) -> list[Cause]:
    causes = validate_metadata(secret.get("metadata") or {})
    causes += validate_data_keys(secret.get("data") or {}, "data")
    key = _TYPED_SECRETS.get(str(secret.get("type") or ""))
    if key is not None:
        raw = (secret.get("data") or {}).get(key)
        decoded = decode_base64(raw) if isinstance(raw, str) else None
        if raw is None:
            causes.append(required(f"data[{key}]"))
        elif decoded is not None and (problem := _json_problem(decoded)):
            causes.append(invalid_value(f"data[{key}]", "<secret contents redacted>", problem))
    total = sum(len(v) * 3 // 4 for v in (secret.get("data") or {}).values())
    if total > 1024 * 1024:
        causes.append(
            {
                "reason": "FieldValueTooLong",
                "field": "data",
                "message": "Too long: must have at most 1048576 bytes",
            }
        )
    return causes


def _json_problem(raw: bytes) -> str:
    """Go's encoding/json complaint about `raw`, roughly; "" when it is valid JSON."""
    try:
        json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", errors="replace").lstrip()
        if not text:
            return "unexpected end of JSON input"
        if text[0] not in '{["-0123456789tfn':
            return f"invalid character '{text[0]}' looking for beginning of value"
        return "invalid JSON"
    return ""


def validate_configmap(cm: dict[str, Any]) -> list[Cause]:
    causes = validate_metadata(cm.get("metadata") or {})
    data = cm.get("data") or {}
    binary = cm.get("binaryData") or {}
    causes += validate_data_keys(data, "data")
    causes += validate_data_keys(binary, "binaryData")
    for key in set(data) & set(binary):
        causes.append(invalid_value("data", key, "duplicate of key present in binaryData"))
    return causes


def validate_event(event: dict[str, Any]) -> list[Cause]:
    causes = validate_metadata(event.get("metadata") or {})
    involved = event.get("involvedObject") or {}
    ns = (event.get("metadata") or {}).get("namespace")
    if involved.get("namespace") and ns and involved["namespace"] != ns:
        causes.append(
            invalid_value("involvedObject.namespace", involved["namespace"], "does not match event.namespace")
        )
    return causes


def validate_namespace(ns: dict[str, Any]) -> list[Cause]:
    meta = ns.get("metadata") or {}
    name = meta.get("name") or ""
    if not name:
        return [required("metadata.name", "name or generateName is required")]
    return validate_name(name, label=True)


def validate_serviceaccount(sa: dict[str, Any]) -> list[Cause]:
    return validate_metadata(sa.get("metadata") or {})


VALIDATORS = {
    "serviceaccounts": validate_serviceaccount,
    "nodes": validate_serviceaccount,
    "pods": validate_pod,
    "secrets": validate_secret,
    "configmaps": validate_configmap,
    "events": validate_event,
    "namespaces": validate_namespace,
}


def validate(resource: str, obj: dict[str, Any]) -> list[Cause]:
    return VALIDATORS[resource](obj)
