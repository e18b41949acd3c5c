"""A namespace of a test's own, on either cluster, ready for pods once it exists."""

from __future__ import annotations

import secrets

from real.cluster import kubectl

from .execution import Cluster


def create_namespace(cluster: Cluster, prefix: str, *labels: str) -> str:
    """Create `<prefix>-<random>` with `labels` (`key=value`) and wait for its `default`
    ServiceAccount, which the namespace's controller makes a moment later and pods need."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    kubectl(cluster.kubeconfig, "create", "namespace", name)
    if labels:
        kubectl(cluster.kubeconfig, "label", "namespace", name, *labels)
    kubectl(cluster.kubeconfig, "-n", name, "wait", "--for=create", "serviceaccount/default", "--timeout=60s")
    return name


def delete_namespace(cluster: Cluster, name: str) -> None:
    kubectl(cluster.kubeconfig, "delete", "namespace", name, "--wait=false")
