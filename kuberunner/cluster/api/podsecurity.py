"""Pod admission for what the node can isolate: hostPath volumes are refused unless allowed.

A hostPath volume hands a container any host path, which undoes every other part of the sandbox
(a job holding the cluster's token could mount `/` and write to the host). The refusal is the one
a cluster enforcing the PodSecurity "baseline" level gives: 403 Forbidden, naming the volumes.
"""

from __future__ import annotations

from typing import Any

from kuberunner.cluster.status import StatusError


def check_pod(pod: dict[str, Any], *, allow_host_path: bool) -> None:
    """Raise StatusError when the pod uses what this cluster does not allow."""
    if allow_host_path:
        return
    volumes = [
        str(v.get("name"))
        for v in (pod.get("spec") or {}).get("volumes") or []
        if isinstance(v, dict) and v.get("hostPath") is not None
    ]
    if not volumes:
        return
    name = (pod.get("metadata") or {}).get("name") or ""
    listed = ", ".join(f'"{v}"' for v in volumes)
    raise StatusError(
        403,
        "Forbidden",
        f'pods "{name}" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes '
        f"({'volume' if len(volumes) == 1 else 'volumes'} {listed})",
        {"name": name, "kind": "pods"},
    )
