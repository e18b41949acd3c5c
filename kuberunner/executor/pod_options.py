"""config.toml's pod keys (`podconfig.PodOptions`) laid onto the pod `podspec.build_pod` made.

The runner's own parts win over the options: its labels (how it finds its pods), its volumes and
mounts, the scripts Secret. The `[[runners.kubernetes.pod_spec]]` patches come last and may change
anything, as in GitLab Runner: they are the administrator's, never a job's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch
import jsonpointer

from kuberunner.executor.stages import BUILD_CONTAINER, HELPER_CONTAINER
from kuberunner.podconfig import ContainerResources, PodOptions, PodSpecPatch


class PodOptionsError(Exception):
    """A `pod_spec` patch that does not fit the pod; the job fails with this message."""


def container_kind(name: str) -> str:
    """`build`, `helper` or `service`: which `*_limit`, `*_security_context` keys apply."""
    if name == BUILD_CONTAINER:
        return "build"
    if name == HELPER_CONTAINER:
        return "helper"
    return "service"


def apply_pod_options(pod: Mapping[str, Any], options: PodOptions) -> dict[str, Any]:
    """A copy of `pod` with `options` applied."""
    out = copy.deepcopy(dict(pod))
    meta, spec = out["metadata"], out["spec"]
    meta["labels"] = {**options.pod_labels, **meta.get("labels", {})}
    meta["annotations"] = {**options.pod_annotations, **meta.get("annotations", {})}
    pod_resources = _resources(options.resources.get("pod", ContainerResources()))
    if pod_resources:
        spec["resources"] = pod_resources
    _scheduling(spec, options)
    _identity(spec, options)
    for container in spec["containers"]:
        _container(container, options)
    for extra in options.volumes:
        spec["volumes"].append(dict(extra.volume))
        for container in spec["containers"]:
            container.setdefault("volumeMounts", []).append(dict(extra.mount))
    for patch in options.pod_spec_patches:
        out["spec"] = spec = apply_patch(spec, patch)
    return out


def _scheduling(spec: dict[str, Any], options: PodOptions) -> None:
    if options.node_selector:
        spec["nodeSelector"] = dict(options.node_selector)
    if options.node_tolerations:
        spec["tolerations"] = [toleration(key, effect) for key, effect in options.node_tolerations.items()]
    if options.affinity:
        spec["affinity"] = copy.deepcopy(dict(options.affinity))
    for key, value in (
        ("priorityClassName", options.priority_class_name),
        ("schedulerName", options.scheduler_name),
        ("runtimeClassName", options.runtime_class_name),
        ("dnsPolicy", options.dns_policy),
    ):
        if value:
            spec[key] = value
    if options.pod_termination_grace_period_seconds is not None:
        spec["terminationGracePeriodSeconds"] = options.pod_termination_grace_period_seconds
    if options.dns_config:
        spec["dnsConfig"] = copy.deepcopy(dict(options.dns_config))
    if options.host_aliases:
        spec["hostAliases"] = [*spec.get("hostAliases", []), *(dict(a) for a in options.host_aliases)]


def _identity(spec: dict[str, Any], options: PodOptions) -> None:
    if options.service_account:
        spec["serviceAccountName"] = options.service_account
    if options.automount_service_account_token:
        spec["automountServiceAccountToken"] = True
    if options.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in options.image_pull_secrets]
    if options.pod_security_context:
        spec["securityContext"] = copy.deepcopy(dict(options.pod_security_context))


def toleration(key: str, effect: str) -> dict[str, str]:
    """GitLab's `"key=value" = "Effect"` form: with a value, operator Equal; without, Exists."""
    name, has_value, value = key.partition("=")
    found = (
        {"key": name, "operator": "Equal", "value": value}
        if has_value
        else {"key": name, "operator": "Exists"}
    )
    if effect:
        found["effect"] = effect
    return found


def _container(container: dict[str, Any], options: PodOptions) -> None:
    kind = container_kind(container["name"])
    resources = _resources(options.resources.get(kind, ContainerResources()))
    if resources:
        container["resources"] = resources
    if options.pull_policy and "imagePullPolicy" not in container:  # a service's own wins
        container["imagePullPolicy"] = options.pull_policy[0]
    security = copy.deepcopy(container.get("securityContext", {}))
    security["capabilities"] = _runner_capabilities(security.get("capabilities", {}), options)
    if options.privileged is not None:
        security["privileged"] = options.privileged
    if options.allow_privilege_escalation is not None:
        security["allowPrivilegeEscalation"] = options.allow_privilege_escalation
    own = copy.deepcopy(dict(options.container_security_context.get(kind, {})))
    capabilities = own.pop("capabilities", None)
    security.update(own)
    if capabilities is not None:
        # A container's own add or drop list replaces the runner-wide one, as in GitLab Runner.
        security["capabilities"] = {**security["capabilities"], **capabilities}
    if not any(security["capabilities"].values()):
        del security["capabilities"]
    container["securityContext"] = security


def _runner_capabilities(base: Mapping[str, Any], options: PodOptions) -> dict[str, Any]:
    """The default drop (NET_RAW), then `cap_add`, then `cap_drop`: a later word on a capability wins."""
    enabled = dict.fromkeys(base.get("drop", []), False)
    enabled.update(dict.fromkeys(options.cap_add, True))
    enabled.update(dict.fromkeys(options.cap_drop, False))
    add = [name for name, on in enabled.items() if on]
    drop = [name for name, on in enabled.items() if not on]
    return {**({"add": add} if add else {}), **({"drop": drop} if drop else {})}


def _resources(bounds: ContainerResources) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if bounds.limits:
        found["limits"] = dict(bounds.limits)
    if bounds.requests:
        found["requests"] = dict(bounds.requests)
    return found


def apply_patch(spec: dict[str, Any], patch: PodSpecPatch) -> dict[str, Any]:
    try:
        if patch.patch_type == "json":
            result: dict[str, Any] = jsonpatch.apply_patch(spec, patch.patch)
            return result
        patched: dict[str, Any] = (merge_patch if patch.patch_type == "merge" else strategic_merge)(
            spec, patch.patch
        )
        return patched
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise PodOptionsError(f"pod_spec patch {patch.name!r} does not apply: {exc}") from exc


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "env": "name",
    "ports": "containerPort",
    "hostAliases": "ip",
}
"""The lists Kubernetes' strategic merge joins by a key instead of replacing (its patchMergeKey)."""


def strategic_merge(target: Any, patch: Any, field: str = "") -> Any:
    """Kubernetes' strategic merge for a PodSpec: a merge patch whose keyed lists merge by element,
    with `$patch: delete` removing an element and `$patch: replace` replacing a whole map."""
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        out = dict(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = strategic_merge(out.get(key), value, key)
        return out
    if isinstance(patch, list) and field in MERGE_KEYS and isinstance(target, list):
        return _merge_list(target, patch, MERGE_KEYS[field])
    return copy.deepcopy(patch)


def _merge_list(target: list[Any], patch: list[Any], key: str) -> list[Any]:
    out = [copy.deepcopy(item) for item in target]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PodOptionsError(f"a strategic patch of a list needs {key!r} in each element: {item!r}")
        index = next((i for i, old in enumerate(out) if old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del out[index]
        elif index is None:
            out.append({k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"})
        else:
            out[index] = strategic_merge(out[index], item)
    return out
