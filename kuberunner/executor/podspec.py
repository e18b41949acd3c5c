"""The job's pod and its scripts Secret, as Kubernetes JSON.

The `build` container runs the job image; a GitLab job adds the `helper` container (see
`executor.stages`). Both have the same PID 1, a shell reading stdin, and mount the same scripts,
logs and builds volumes, so a stage runs the same way in either and the helper's clone is the
build container's project directory.

The Secret is created after the pod and owned by it (ownerReference to the pod's uid), so the
cluster deletes it with the pod and no crash of ours between two calls can leak it; the kubelet
simply waits for the Secret before it starts the container.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kuberunner.executor import services
from kuberunner.executor.services import ServiceContainer
from kuberunner.executor.stages import BUILD_CONTAINER, HELPER_CONTAINER
from kuberunner.shell.layout import DETECT_SHELL, PodPaths
from kuberunner.shell.transfers import PRIVATE_DIR

RUNNER_LABEL = "kuberunner.io/runner"
JOB_LABEL = "kuberunner.io/job"
JOB_NAME_ANNOTATION = "kuberunner.io/job-name"
OWNER_LABEL = "kuberunner.io/owner"


@dataclass(frozen=True, slots=True)
class PodDesign:
    name: str
    namespace: str
    image: str
    runner_name: str
    job_id: str
    job_name: str
    paths: PodPaths
    active_deadline_seconds: int | None = None
    memory_limit: str | None = None
    """`resources.limits.memory` of the build container, as config.toml's `memory_limit`."""
    helper_image: str | None = None
    """When set, the pod gets a `helper` container running this image."""
    owner: str | None = None
    """The `kuberunner run` process family (its system id) that owns the pod: what finds orphans."""
    services: tuple[ServiceContainer, ...] = ()
    """Extra containers (GitLab's services), reachable from the others by alias on 127.0.0.1."""
    script_keys: tuple[str, ...] = ()
    private_keys: tuple[str, ...] = ()
    """Keys of the scripts Secret only the helper may read (transfer credentials): when any, the
    scripts volume lists `script_keys` alone and a `transfer` volume, mounted in the helper only,
    holds these."""


def container_security() -> dict[str, Any]:
    """gitlab-runner's defaults: never privileged, NET_RAW dropped (no raw sockets, no ARP/ICMP
    spoofing). The image's user, root included, and setuid tools such as sudo keep working: no
    runAsNonRoot, and allowPrivilegeEscalation is left to the cluster's default, as gitlab-runner does."""
    return {"privileged": False, "capabilities": {"drop": ["NET_RAW"]}}


def secret_name(pod_name: str) -> str:
    return f"{pod_name}-scripts"


def build_pod(design: PodDesign) -> dict[str, Any]:
    build = _container(BUILD_CONTAINER, design.image, design.paths)
    if design.memory_limit is not None:
        build["resources"] = {"limits": {"memory": design.memory_limit}}
    containers = [build]
    if design.helper_image is not None:
        containers.append(_container(HELPER_CONTAINER, design.helper_image, design.paths))
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        # The runner talks to the API, never the job: a token in the pod would only hand the job the
        # namespace's default ServiceAccount.
        "automountServiceAccountToken": False,
        "containers": containers,
        "volumes": [
            {"name": "scripts", "secret": {"secretName": secret_name(design.name), "defaultMode": 0o755}},
            {"name": "logs", "emptyDir": {}},
            {"name": "builds", "emptyDir": {}},
        ],
    }
    if design.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = design.active_deadline_seconds
    if design.services:
        containers += services.pod_containers(design.services, container_security())
        spec["hostAliases"] = services.host_aliases(design.services)
    if design.private_keys:
        _keep_private(spec, design)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": design.name,
            "namespace": design.namespace,
            "labels": {
                RUNNER_LABEL: _label_value(design.runner_name),
                JOB_LABEL: _label_value(design.job_id),
                **({OWNER_LABEL: _label_value(design.owner)} if design.owner else {}),
            },
            "annotations": {JOB_NAME_ANNOTATION: design.job_name},
        },
        "spec": spec,
    }


def _keep_private(spec: dict[str, Any], design: PodDesign) -> None:
    """Two views of the one Secret: the scripts for every container, the credentials for the helper
    (for the build container when there is no helper: `exec`, whose URLs only open local objects)."""
    spec["volumes"][0]["secret"]["items"] = [{"key": k, "path": k} for k in design.script_keys]
    spec["volumes"].append(
        {
            "name": "transfer",
            "secret": {
                "secretName": secret_name(design.name),
                "defaultMode": 0o400,
                "items": [{"key": k, "path": k} for k in design.private_keys],
            },
        }
    )
    names = [c["name"] for c in spec["containers"]]
    helper = spec["containers"][
        names.index(HELPER_CONTAINER if HELPER_CONTAINER in names else BUILD_CONTAINER)
    ]
    helper["volumeMounts"].append({"name": "transfer", "mountPath": PRIVATE_DIR, "readOnly": True})


def _container(name: str, image: str, paths: PodPaths) -> dict[str, Any]:
    """PID 1 reads commands from stdin; stdinOnce false so the runner can attach again after a drop."""
    return {
        "name": name,
        "image": image,
        "command": ["sh", "-c", DETECT_SHELL],
        "stdin": True,
        "stdinOnce": False,
        "tty": False,
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "scripts", "mountPath": paths.scripts_dir, "readOnly": True},
            {"name": "logs", "mountPath": paths.logs_dir},
            {"name": "builds", "mountPath": paths.builds_dir},
        ],
    }


def build_secret(*, pod: Mapping[str, Any], files: Mapping[str, bytes]) -> dict[str, Any]:
    meta = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": dict(meta.get("labels", {})),
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": False,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "data": {key: base64.b64encode(value).decode() for key, value in files.items()},
    }


def dns_slug(text: str, *, limit: int) -> str:
    """Lower-case letters and digits joined by single dashes, at most `limit` long: fit for a pod
    name or a part of one (DNS-1123). Empty when `text` has no letter or digit."""
    cleaned = "".join(c if c.isascii() and c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in cleaned.split("-") if part)[:limit].strip("-")


def _label_value(text: str) -> str:
    """Label values: at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in text)[:63]
    return cleaned.strip("._-") or "x"
