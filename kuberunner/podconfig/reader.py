"""Reads the pod keys of one `[runners.kubernetes]` table into `PodOptions`.

Values are checked as far as one line naming the key can say what is wrong (a quantity that is no
quantity, a policy that is none, a key that is no key); what only the API server knows (does the
PriorityClass exist?) is left to it, and fails the job with its message.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from kuberunner.errors import ConfigFileError
from kuberunner.podconfig.keys import GITLAB_KUBERNETES_KEYS, KUBERUNNER_KUBERNETES_KEYS
from kuberunner.podconfig.options import (
    CONTAINER_KINDS,
    DNS_POLICIES,
    PULL_POLICIES,
    RESERVED_VOLUMES,
    RESOURCE_SCOPES,
    RESOURCES,
    TOLERATION_EFFECTS,
    ContainerResources,
    ExtraVolume,
    PatchType,
    PodOptions,
    PodSpecPatch,
    quantity_value,
)
from kuberunner.podconfig.tables import (
    AFFINITY,
    CONTAINER_SECURITY_KEYS,
    KIND_NAMES,
    POD_SECURITY_KEYS,
    VOLUME_KEYS,
    is_kind,
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

Fail = Callable[[str, str], ConfigFileError]
"""(key, message) → the error to raise."""


class PodOptionsReader:
    """Reads the pod keys of one `[runners.kubernetes]` table; every problem is `fail(key, message)`."""

    def __init__(self, fail: Fail, where: str, base_dir: Path) -> None:
        self._fail = fail
        self._where = where
        self._base_dir = base_dir

    def read(self, table: Mapping[str, Any], *, also_known: Iterable[str] = ()) -> PodOptions:
        """`also_known`: the keys of `[runners.kubernetes]` read elsewhere (`kuberunner.config`)."""
        known = {*GITLAB_KUBERNETES_KEYS, *KUBERUNNER_KUBERNETES_KEYS, *also_known}
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self._error(key, f"unknown key of [runners.kubernetes]{hint}")
        t = table
        pull_policy = self._pull_policies(t, "pull_policy")
        return PodOptions(
            resources={scope: self._resources(t, scope) for scope in RESOURCE_SCOPES},
            node_selector=self._string_map(t, "node_selector"),
            node_selector_overwrite_allowed=self._regex(t, "node_selector_overwrite_allowed"),
            node_tolerations=self._tolerations(t),
            node_tolerations_overwrite_allowed=self._regex(t, "node_tolerations_overwrite_allowed"),
            affinity=self._affinity(t),
            service_account=self._string(t, "service_account"),
            service_account_overwrite_allowed=self._regex(t, "service_account_overwrite_allowed"),
            automount_service_account_token=bool(self._bool(t, "automount_service_account_token")),
            image_pull_secrets=self._strings(t, "image_pull_secrets"),
            pull_policy=pull_policy,
            allowed_pull_policies=self._pull_policies(t, "allowed_pull_policies"),
            allowed_images=self._strings(t, "allowed_images"),
            allowed_services=self._strings(t, "allowed_services"),
            privileged=self._bool(t, "privileged"),
            allow_privilege_escalation=self._bool(t, "allow_privilege_escalation"),
            cap_add=self._strings(t, "cap_add"),
            cap_drop=self._strings(t, "cap_drop"),
            pod_security_context=self._security_context(t, "pod_security_context", POD_SECURITY_KEYS),
            container_security_context={
                kind: self._security_context(t, f"{kind}_container_security_context", CONTAINER_SECURITY_KEYS)
                for kind in CONTAINER_KINDS
            },
            pod_labels=self._string_map(t, "pod_labels"),
            pod_labels_overwrite_allowed=self._regex(t, "pod_labels_overwrite_allowed"),
            pod_annotations=self._string_map(t, "pod_annotations"),
            pod_annotations_overwrite_allowed=self._regex(t, "pod_annotations_overwrite_allowed"),
            priority_class_name=self._string(t, "priority_class_name"),
            scheduler_name=self._string(t, "scheduler_name"),
            runtime_class_name=self._string(t, "runtime_class_name"),
            dns_policy=self._dns_policy(t),
            dns_config=self._dns_config(t),
            host_aliases=self._host_aliases(t),
            volumes=self._volumes(t),
            pod_spec_patches=self._patches(t),
            namespace_overwrite_allowed=self._regex(t, "namespace_overwrite_allowed"),
            cleanup_grace_period_seconds=self._grace(t, "cleanup_grace_period_seconds"),
            pod_termination_grace_period_seconds=self._grace(t, "pod_termination_grace_period_seconds"),
        )

    # --- scalar and list values -------------------------------------------------------------

    def _error(self, key: str, message: str) -> ConfigFileError:
        return self._fail(f"{self._where}{key}", message)

    def _string(self, t: Mapping[str, Any], key: str) -> str:
        value = t.get(key, "")
        if not isinstance(value, str):
            raise self._error(key, "expected a string")
        return value

    def _bool(self, t: Mapping[str, Any], key: str) -> bool | None:
        value = t.get(key)
        if value is not None and not isinstance(value, bool):
            raise self._error(key, "expected true or false")
        return value

    def _strings(self, t: Mapping[str, Any], key: str) -> tuple[str, ...]:
        value = t.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._error(key, "expected a list of strings")
        return tuple(value)

    def _table(self, t: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = t.get(key, {})
        if not isinstance(value, dict):
            raise self._error(key, "expected a table")
        return value

    def _string_map(self, t: Mapping[str, Any], key: str) -> dict[str, str]:
        value = self._table(t, key)
        for name, item in value.items():
            if not isinstance(item, str):
                raise self._error(f"{key}.{name}", "expected a string")
        return dict(value)

    def _regex(self, t: Mapping[str, Any], key: str) -> str:
        text = self._string(t, key)
        try:
            re.compile(text)
        except re.error as exc:
            raise self._error(key, f"not a regular expression: {exc}") from exc
        return text

    def _quantity(self, t: Mapping[str, Any], key: str) -> str | None:
        text = self._string(t, key)
        if not text:
            return None
        if quantity_value(text) is None:
            raise self._error(key, f'{text!r} is not a Kubernetes quantity (e.g. "500m", "1Gi")')
        return text

    def _resources(self, t: Mapping[str, Any], kind: str) -> ContainerResources:
        prefix = "" if kind == "build" else f"{kind}_"
        found: dict[str, dict[str, str]] = {"limit": {}, "request": {}, "limit_max": {}, "request_max": {}}
        for resource in RESOURCES if kind != "pod" else RESOURCES[:2]:
            for which in ("limit", "request"):
                key = f"{prefix}{resource.replace('-', '_')}_{which}"
                for slot, name in ((which, key), (f"{which}_max", f"{key}_overwrite_max_allowed")):
                    value = self._quantity(t, name)
                    if value is not None:
                        found[slot][resource] = value
        return ContainerResources(
            limits=found["limit"],
            requests=found["request"],
            max_limits=found["limit_max"],
            max_requests=found["request_max"],
        )

    def _pull_policies(self, t: Mapping[str, Any], key: str) -> tuple[str, ...]:
        value = t.get(key, [])
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise self._error(key, "expected a string or a list of strings")
        policies = []
        for item in items:
            if item == "":
                continue
            policy = PULL_POLICIES.get(item.lower())
            if policy is None:
                raise self._error(key, f"{item!r} is not one of always, if-not-present, never")
            policies.append(policy)
        return tuple(policies)

    def _tolerations(self, t: Mapping[str, Any]) -> dict[str, str]:
        tolerations = self._string_map(t, "node_tolerations")
        for name, effect in tolerations.items():
            if effect not in ("", *TOLERATION_EFFECTS):
                raise self._error(
                    f"node_tolerations.{name}", f"{effect!r} is not one of {', '.join(TOLERATION_EFFECTS)}"
                )
        return tolerations

    def _dns_policy(self, t: Mapping[str, Any]) -> str:
        text = self._string(t, "dns_policy")
        if not text:
            return ""
        policy = DNS_POLICIES.get(text.lower())
        if policy is None:
            raise self._error("dns_policy", f"{text!r} is not one of {', '.join(DNS_POLICIES)}")
        return policy

    def _grace(self, t: Mapping[str, Any], key: str) -> int | None:
        value = t.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3600:
            raise self._error(key, "expected a number of seconds from 0 to 3600")
        return value

    # --- nested tables ------------------------------------------------------------------------

    def _known(self, key: str, table: Mapping[str, Any], allowed: Mapping[str, type]) -> None:
        for name, value in table.items():
            kind = allowed.get(name)
            if kind is None:
                raise self._error(f"{key}.{name}", f"unknown key; known: {', '.join(allowed)}")
            if not is_kind(value, kind):
                raise self._error(f"{key}.{name}", f"expected {KIND_NAMES[kind]}")

    def _security_context(
        self, t: Mapping[str, Any], key: str, allowed: Mapping[str, type]
    ) -> dict[str, Any]:
        table = self._table(t, key)
        self._known(key, table, allowed)
        if "capabilities" in table:
            self._known(f"{key}.capabilities", table["capabilities"], {"add": list, "drop": list})
        proc_mount = str(table.get("proc_mount", "")).strip().title()
        if proc_mount not in ("", "Default", "Unmasked"):
            raise self._error(f"{key}.proc_mount", "expected default or unmasked")
        camel: dict[str, Any] = _camel_keys(
            {k: v for k, v in table.items() if k not in ("selinux_type", "proc_mount")}
        )
        if table.get("selinux_type"):
            camel["seLinuxOptions"] = {"type": table["selinux_type"]}
        if proc_mount:
            camel["procMount"] = proc_mount
        return camel

    def _affinity(self, t: Mapping[str, Any]) -> dict[str, Any]:
        table = self._table(t, "affinity")
        self._shaped("affinity", table, AFFINITY)
        camel: dict[str, Any] = _camel_keys(table)
        return camel

    def _shaped(self, key: str, value: Any, shape: Any) -> None:
        """`value` against `shape`: a dict of field → shape, `[shape]` for a list of it, `dict` for a
        table of strings (labels), or the Python type of a scalar."""
        if isinstance(shape, list):
            if not isinstance(value, list):
                raise self._error(key, "expected a list")
            for index, item in enumerate(value):
                self._shaped(f"{key}[{index}]", item, shape[0])
        elif isinstance(shape, dict):
            if not isinstance(value, dict):
                raise self._error(key, "expected a table")
            for name, item in value.items():
                if name not in shape:
                    raise self._error(f"{key}.{name}", f"unknown key; known: {', '.join(shape)}")
                self._shaped(f"{key}.{name}", item, shape[name])
        elif shape is dict:
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise self._error(key, "expected a table of strings")
        elif not is_kind(value, shape):
            raise self._error(key, f"expected {KIND_NAMES[shape]}")

    def _dns_config(self, t: Mapping[str, Any]) -> dict[str, Any]:
        table = self._table(t, "dns_config")
        self._known("dns_config", table, {"nameservers": list, "searches": list, "options": list})
        for index, option in enumerate(table.get("options", [])):
            where = f"dns_config.options[{index}]"
            if not isinstance(option, dict):
                raise self._error(where, "expected a table")
            self._known(where, option, {"name": str, "value": str})
        return dict(table)

    def _host_aliases(self, t: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
        entries = self._tables(t, "host_aliases")
        for index, entry in enumerate(entries):
            where = f"host_aliases[{index}]"
            self._known(where, entry, {"ip": str, "hostnames": list})
            if not entry.get("ip") or not entry.get("hostnames"):
                raise self._error(where, "needs ip and hostnames")
        return tuple({"ip": e["ip"], "hostnames": list(e["hostnames"])} for e in entries)

    def _tables(self, t: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
        value = t.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self._error(key, f"expected a list of tables ([[...{key}]])")
        return value

    def _volumes(self, t: Mapping[str, Any]) -> tuple[ExtraVolume, ...]:
        volumes = self._table(t, "volumes")
        found: list[ExtraVolume] = []
        names: set[str] = set()
        for kind in volumes:
            if kind not in VOLUME_KEYS:
                raise self._error(f"volumes.{kind}", f"unknown volume kind; known: {', '.join(VOLUME_KEYS)}")
        for kind, allowed in VOLUME_KEYS.items():
            for index, entry in enumerate(self._tables(volumes, kind)):
                where = f"volumes.{kind}[{index}]"
                self._known(where, entry, allowed)
                name, mount_path = entry.get("name", ""), entry.get("mount_path", "")
                if not _DNS_LABEL.match(name) or len(name) > 63:
                    raise self._error(
                        f"{where}.name", f"{name!r} is not a valid volume name (a DNS-1123 label)"
                    )
                if name in names or name in RESERVED_VOLUMES:
                    raise self._error(f"{where}.name", f"volume name {name!r} is already used")
                if not mount_path.startswith("/"):
                    raise self._error(f"{where}.mount_path", "expected an absolute path")
                if "items" in entry and not all(isinstance(v, str) for v in entry["items"].values()):
                    raise self._error(f"{where}.items", "expected a table of key = path strings")
                names.add(name)
                found.append(_volume(kind, entry))
        return tuple(found)

    def _patches(self, t: Mapping[str, Any]) -> tuple[PodSpecPatch, ...]:
        found = []
        for index, entry in enumerate(self._tables(t, "pod_spec")):
            where = f"pod_spec[{index}]"
            self._known(where, entry, {"name": str, "patch": str, "patch_path": str, "patch_type": str})
            patch_type: PatchType = entry.get("patch_type", "strategic") or "strategic"
            if patch_type not in ("strategic", "merge", "json"):
                raise self._error(
                    f"{where}.patch_type", f"{patch_type!r} is not one of strategic, merge, json"
                )
            if ("patch" in entry) == ("patch_path" in entry):
                raise self._error(where, "needs exactly one of patch and patch_path")
            text = entry.get("patch") or self._read_patch(f"{where}.patch_path", entry["patch_path"])
            found.append(
                PodSpecPatch(
                    name=entry.get("name", f"pod_spec[{index}]"),
                    patch_type=patch_type,
                    patch=self._parse_patch(where, text, patch_type),
                )
            )
        return tuple(found)

    def _read_patch(self, key: str, path_text: str) -> str:
        path = Path(path_text)
        path = path if path.is_absolute() else self._base_dir / path
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise self._error(key, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc

    def _parse_patch(self, where: str, text: str, patch_type: str) -> Any:
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = YAML(typ="safe", pure=True).load(text)
            except YAMLError as exc:
                raise self._error(
                    f"{where}.patch", f"neither JSON nor YAML: {' '.join(str(exc).split())}"
                ) from exc
        if patch_type == "json":
            ops = value if isinstance(value, list) else None
            if ops is None or not all(isinstance(op, dict) and "op" in op and "path" in op for op in ops):
                raise self._error(f"{where}.patch", "a json patch is a list of {op, path, ...} operations")
        elif not isinstance(value, dict):
            raise self._error(f"{where}.patch", f"a {patch_type} patch is an object of PodSpec fields")
        return value


def _volume(kind: str, entry: Mapping[str, Any]) -> ExtraVolume:
    """GitLab's volume entry as a pod volume and its mount."""
    name = entry["name"]
    mount: dict[str, Any] = {"name": name, "mountPath": entry["mount_path"]}
    if entry.get("read_only"):
        mount["readOnly"] = True
    if entry.get("sub_path"):
        mount["subPath"] = entry["sub_path"]
    if entry.get("mount_propagation"):
        mount["mountPropagation"] = entry["mount_propagation"]
    items = [{"key": k, "path": p} for k, p in entry.get("items", {}).items()]
    source: dict[str, Any]
    if kind == "csi":
        csi: dict[str, Any] = {"driver": entry.get("driver", "")}
        if entry.get("fs_type"):
            csi["fsType"] = entry["fs_type"]
        if entry.get("read_only"):
            csi["readOnly"] = True
        if entry.get("volume_attributes"):
            csi["volumeAttributes"] = dict(entry["volume_attributes"])
        source = {"csi": csi}
    elif kind == "host_path":
        # GitLab's default: the same path on the host as in the container.
        source = {"hostPath": {"path": entry.get("host_path") or entry["mount_path"]}}
    elif kind == "pvc":
        source = {
            "persistentVolumeClaim": {
                "claimName": name,
                **({"readOnly": True} if entry.get("read_only") else {}),
            }
        }
    elif kind == "config_map":
        source = {"configMap": {"name": name, **({"items": items} if items else {})}}
    elif kind == "secret":
        source = {"secret": {"secretName": name, **({"items": items} if items else {})}}
    else:
        empty: dict[str, Any] = {}
        if entry.get("medium"):
            empty["medium"] = entry["medium"]
        if entry.get("size_limit"):
            empty["sizeLimit"] = entry["size_limit"]
        source = {"emptyDir": empty}
    return ExtraVolume(volume={"name": name, **source}, mount=mount)


_VERBATIM_CHILDREN = ("match_labels", "matchLabels")
"""Tables whose keys are label names, not field names: kept as written."""


def _camel_keys(value: Any) -> Any:
    """GitLab writes Kubernetes structures in TOML with snake_case field names."""
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        camel = _camel(key)
        out[camel] = dict(item) if key in _VERBATIM_CHILDREN and isinstance(item, dict) else _camel_keys(item)
    return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
