"""What a job's variables may change of the pod, within the bounds config.toml sets (GitLab Runner's
`KUBERNETES_*` variables and `*_overwrite_allowed` keys), and the images it may use.

A job is hostile input: it changes nothing that config.toml does not allow it to. A value with no
bound in config.toml is ignored, as in GitLab Runner; a value outside its bound refuses the job, with
GitLab Runner's message. Every applied overwrite is one trace line saying so.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kuberunner.podconfig import RESOURCE_SCOPES, RESOURCES, ContainerResources, PodOptions, quantity_value


class OverwriteRefused(Exception):
    """The job asked for more than config.toml allows; str() is the reason the job fails with."""


@dataclass(frozen=True, slots=True)
class Resolved:
    namespace: str
    options: PodOptions
    notes: tuple[str, ...]
    """Trace lines: what was overwritten with what."""


_RESOURCE_NAMES = {"cpu": "CPU", "memory": "Memory", "ephemeral-storage": "EphemeralStorage"}
_KIND_PREFIX = {"build": "", "helper": "HELPER_", "service": "SERVICE_", "pod": "POD_"}
_KIND_FIELD = {"build": "", "helper": "Helper", "service": "Service", "pod": "Pod"}


def resolve(
    options: PodOptions,
    *,
    namespace: str,
    variables: Iterable[tuple[str, str]],
    image: str | None,
    default_image: str,
    service_images: Iterable[str] = (),
    image_pull_policy: tuple[str, ...] = (),
    service_pull_policies: Iterable[tuple[str, tuple[str, ...]]] = (),
) -> Resolved:
    """The namespace and options this job runs with; OverwriteRefused when it asks for too much.
    `image_pull_policy` is the job's `image:pull_policy` (Kubernetes names), () when it has none;
    `service_pull_policies` each service's image and own `pull_policy`, judged the same way."""
    values = dict(variables)  # a later definition wins, as in the job's environment
    notes: list[str] = []
    for service_image, wanted in service_pull_policies:
        if wanted:
            _check_job_pull_policy(options, wanted, service_image)
    if image_pull_policy:
        _check_job_pull_policy(options, image_pull_policy, image or default_image)
        # Judged here, so the configured list no longer matters: the job's replaces it.
        options = dataclasses.replace(options, pull_policy=image_pull_policy)
    else:
        _check_configured_pull_policy(options)
    _check_images(options, image, default_image, service_images)
    namespace = _overwrite_one(
        "Namespace",
        namespace,
        options.namespace_overwrite_allowed,
        values.get("KUBERNETES_NAMESPACE_OVERWRITE"),
        notes,
    )
    account = _overwrite_one(
        "ServiceAccount",
        options.service_account,
        options.service_account_overwrite_allowed,
        values.get("KUBERNETES_SERVICE_ACCOUNT_OVERWRITE"),
        notes,
    )

    def mapped(field_name: str, current: Mapping[str, str], allowed: str, prefix: str) -> dict[str, str]:
        return _overwrite_map(
            field_name, current, allowed, values, prefix, notes, tolerations=field_name == "NodeTolerations"
        )

    # GitLab Runner's order, which is also the order of the trace lines.
    labels = mapped(
        "PodLabels", options.pod_labels, options.pod_labels_overwrite_allowed, "KUBERNETES_POD_LABELS_"
    )
    annotations = mapped(
        "PodAnnotations",
        options.pod_annotations,
        options.pod_annotations_overwrite_allowed,
        "KUBERNETES_POD_ANNOTATIONS_",
    )
    selector = mapped(
        "NodeSelector",
        options.node_selector,
        options.node_selector_overwrite_allowed,
        "KUBERNETES_NODE_SELECTOR_",
    )
    tolerations = mapped(
        "NodeTolerations",
        options.node_tolerations,
        options.node_tolerations_overwrite_allowed,
        "KUBERNETES_NODE_TOLERATIONS_",
    )
    resources = {
        kind: _overwrite_resources(kind, options.resources.get(kind, ContainerResources()), values, notes)
        for kind in RESOURCE_SCOPES
    }
    judged = dataclasses.replace(
        options,
        service_account=account,
        pod_labels=labels,
        pod_annotations=annotations,
        node_selector=selector,
        node_tolerations=tolerations,
        resources=resources,
    )
    return Resolved(namespace, judged, tuple(notes))


def _check_images(
    options: PodOptions, image: str | None, default_image: str, services: Iterable[str]
) -> None:
    """GitLab Runner's allowed_images/allowed_services: glob patterns; the configured image is
    always allowed."""
    if (
        options.allowed_images
        and image
        and image != default_image
        and not _matches(image, options.allowed_images)
    ):
        raise OverwriteRefused(
            f'the "{image}" image is not present on list of allowed images: '
            f"{', '.join(options.allowed_images)}"
        )
    for service in services:
        if options.allowed_services and not _matches(service, options.allowed_services):
            raise OverwriteRefused(
                f'the "{service}" image is not present on list of allowed services: '
                f"{', '.join(options.allowed_services)}"
            )


def _check_configured_pull_policy(options: PodOptions) -> None:
    if options.allowed_pull_policies and options.pull_policy:
        refused = [p for p in options.pull_policy if p not in options.allowed_pull_policies]
        if refused:
            raise OverwriteRefused(
                f"the configured PullPolicies ({_listed(options.pull_policy)}) are not allowed by "
                f"AllowedPullPolicies ({_listed(options.allowed_pull_policies)})"
            )


def _check_job_pull_policy(options: PodOptions, wanted: tuple[str, ...], image: str) -> None:
    """As in GitLab Runner, a job may only pick among `allowed_pull_policies`, which default to the
    configured `pull_policy`: with neither set, a job's `image:pull_policy` is refused."""
    allowed = options.allowed_pull_policies or options.pull_policy
    if any(policy not in allowed for policy in wanted):
        raise OverwriteRefused(
            f"failed to pull image '{image}': pull_policy ({_listed(wanted)}) defined in GitLab pipeline "
            f"config is not one of the allowed_pull_policies ({_listed(allowed)})"
        )


def _listed(policies: Iterable[str]) -> str:
    return "[" + " ".join(policies) + "]"


def _matches(image: str, patterns: Iterable[str]) -> bool:
    # fnmatch's `*` also crosses `/`, so "registry.example.com/*" allows every path below it, as `**` does
    # in GitLab Runner's patterns; `**` means the same here.
    return any(fnmatch.fnmatchcase(image, pattern.replace("**", "*")) for pattern in patterns)


def _regex_check(pattern: str, value: str) -> None:
    # Go's regexp.MatchString, which GitLab Runner uses: a match anywhere unless anchored.
    if re.search(pattern, value) is None:
        raise OverwriteRefused(f'provided value "{value}" does not match "{pattern}"')


def _overwrite_one(field_name: str, value: str, allowed: str, wanted: str | None, notes: list[str]) -> str:
    if not allowed or not wanted:
        return value
    _regex_check(allowed, wanted)
    notes.append(f'"{field_name}" overwritten with "{wanted}"')
    return wanted


def _overwrite_map(
    field_name: str,
    current: Mapping[str, str],
    allowed: str,
    values: Mapping[str, str],
    prefix: str,
    notes: list[str],
    *,
    tolerations: bool,
) -> dict[str, str]:
    out = dict(current)
    if not allowed:
        return out
    for name in sorted(values):
        if not name.startswith(prefix) or not values[name]:
            continue
        text = values[name]
        _regex_check(allowed, text)
        if tolerations:
            # GitLab's form: key=value:Effect or key:Effect.
            key, _, effect = text.rpartition(":") if ":" in text else (text, "", "")
        else:
            key, has_value, effect = text.partition("=")
            if not has_value or not key:
                raise OverwriteRefused(f'provided value "{text}" does not match "k=v"')
        out[key] = effect
        notes.append(f'"{field_name}" "{key}" overwritten with "{effect}"')
    return out


def _overwrite_resources(
    kind: str, bounds: ContainerResources, values: Mapping[str, str], notes: list[str]
) -> ContainerResources:
    limits, requests = dict(bounds.limits), dict(bounds.requests)
    for which, target, maxima in (
        ("LIMIT", limits, bounds.max_limits),
        ("REQUEST", requests, bounds.max_requests),
    ):
        for resource in RESOURCES:
            variable = f"KUBERNETES_{_KIND_PREFIX[kind]}{resource.replace('-', '_').upper()}_{which}"
            wanted = values.get(variable, "")
            maximum = maxima.get(resource)
            if not wanted or maximum is None:
                continue  # GitLab Runner: no bound, no overwrite
            field_name = f"{_KIND_FIELD[kind]}{_RESOURCE_NAMES[resource]}{which.title()}"
            what = f"invalid {kind} {which.lower()}s specified"
            asked = quantity_value(wanted)
            if asked is None:
                raise OverwriteRefused(f'{what}: "{wanted}" is not a Kubernetes quantity ({variable})')
            bound = quantity_value(maximum)
            if bound is not None and asked > bound:
                raise OverwriteRefused(
                    f'{what}: the resource "{field_name}" requested "{wanted}" is higher than '
                    f'limit allowed "{maximum}"'
                )
            target[resource] = wanted
            notes.append(f'"{field_name}" overwritten with "{wanted}"')
    return dataclasses.replace(bounds, limits=limits, requests=requests)
