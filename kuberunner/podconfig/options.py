"""The `[runners.kubernetes]` keys that shape the job's pod, as typed values: resources and their
overwrite bounds, scheduling, identity, security, volumes and `pod_spec` patches."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

RESOURCES = ("cpu", "memory", "ephemeral-storage")
"""Kubernetes' names; config.toml spells the last one `ephemeral_storage`."""
CONTAINER_KINDS = ("build", "helper", "service")
RESOURCE_SCOPES = (*CONTAINER_KINDS, "pod")
"""Who `*_limit`/`*_request` keys apply to: a container kind, or the whole pod (`pod_cpu_limit`…,
Kubernetes' pod-level resources, cpu and memory only)."""
PULL_POLICIES = {"always": "Always", "if-not-present": "IfNotPresent", "never": "Never"}
DNS_POLICIES = {
    "none": "None",
    "default": "Default",
    "cluster-first": "ClusterFirst",
    "cluster-first-with-host-net": "ClusterFirstWithHostNet",
}
PatchType = Literal["strategic", "merge", "json"]

_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_SUFFIXES = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def quantity_value(text: str) -> Decimal | None:
    """The number a Kubernetes quantity stands for ("500m" → 0.5, "1Gi" → 1073741824); None when
    `text` is no quantity."""
    found = _QUANTITY.match(text.strip())
    if found is None:
        return None
    suffix = found.group(3) or ""
    try:
        number = Decimal(found.group(1))
        if suffix[:1] in ("e", "E"):
            return number * Decimal(10) ** int(suffix[1:])
    except InvalidOperation:
        return None
    return number * _SUFFIXES[suffix]


@dataclass(frozen=True, slots=True)
class ContainerResources:
    """One container kind's `*_limit`/`*_request` and their `*_overwrite_max_allowed` bounds, by
    Kubernetes resource name. A bound that is absent means job variables cannot change that value."""

    limits: Mapping[str, str] = field(default_factory=dict)
    requests: Mapping[str, str] = field(default_factory=dict)
    max_limits: Mapping[str, str] = field(default_factory=dict)
    max_requests: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExtraVolume:
    """One `[[runners.kubernetes.volumes.*]]` entry: the pod volume and the mount every container gets."""

    volume: Mapping[str, Any]
    mount: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PodSpecPatch:
    """One `[[runners.kubernetes.pod_spec]]`: applied to the pod's spec after everything else."""

    name: str
    patch_type: PatchType
    patch: Any


@dataclass(frozen=True, slots=True)
class PodOptions:
    resources: Mapping[str, ContainerResources] = field(default_factory=dict)
    """By container kind (`build`, `helper`, `service`), and `pod` for the pod-level resources."""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    node_selector_overwrite_allowed: str = ""
    node_tolerations: Mapping[str, str] = field(default_factory=dict)
    """GitLab's form: `"key=value" = "Effect"`, `"key" = "Effect"` (operator Exists); an empty effect
    tolerates every effect."""
    node_tolerations_overwrite_allowed: str = ""
    affinity: Mapping[str, Any] = field(default_factory=dict)
    service_account: str = ""
    service_account_overwrite_allowed: str = ""
    automount_service_account_token: bool = False
    """kuberunner's default is no token in the pod (the job needs no API access); true mounts the
    ServiceAccount's token, for jobs that deploy with `service_account`'s rights."""
    image_pull_secrets: tuple[str, ...] = ()
    pull_policy: tuple[str, ...] = ()
    """Kubernetes' spelling (`Always`…); the first is used."""
    allowed_pull_policies: tuple[str, ...] = ()
    allowed_images: tuple[str, ...] = ()
    allowed_services: tuple[str, ...] = ()
    privileged: bool | None = None
    allow_privilege_escalation: bool | None = None
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    pod_security_context: Mapping[str, Any] = field(default_factory=dict)
    container_security_context: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """By container kind, from `build_`/`helper_`/`service_container_security_context`."""
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_labels_overwrite_allowed: str = ""
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    pod_annotations_overwrite_allowed: str = ""
    priority_class_name: str = ""
    scheduler_name: str = ""
    runtime_class_name: str = ""
    dns_policy: str = ""
    dns_config: Mapping[str, Any] = field(default_factory=dict)
    host_aliases: tuple[Mapping[str, Any], ...] = ()
    volumes: tuple[ExtraVolume, ...] = ()
    pod_spec_patches: tuple[PodSpecPatch, ...] = ()
    namespace_overwrite_allowed: str = ""
    cleanup_grace_period_seconds: int | None = None
    pod_termination_grace_period_seconds: int | None = None
    """The pod's own `terminationGracePeriodSeconds` (kuberunner's default is 0: the runner stops
    the job itself before it deletes the pod)."""


TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
RESERVED_VOLUMES = ("scripts", "logs", "builds", "transfer")
"""The pod's own volumes (`executor.podspec`)."""
