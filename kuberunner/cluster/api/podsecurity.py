"""Pod admission for what the node can isolate: hostPath volumes are refused unless allowed, and
privileged containers always.

A hostPath volume hands a container any host path, which undoes every other part of the sandbox
(a job holding the cluster's token could mount `/` and write to the host); a privileged container
asks for every capability and the host's devices, which the node's sandbox cannot give without
giving up the host. The refusal is the one a cluster enforcing the PodSecurity "baseline" level
gives: 403 Forbidden, naming the volumes and containers, checks in its order.
"""

from __future__ import annotations

from typing import Any

from kuberunner.cluster.status import StatusError


def check_pod(pod: dict[str, Any], *, allow_host_path: bool) -> None:
    """Raise StatusError when the pod uses what this cluster does not allow."""
    spec = pod.get("spec") or {}
    volumes = [
        str(v.get("name"))
        for v in spec.get("volumes") or []
        if isinstance(v, dict) and v.get("hostPath") is not None
    ]
    privileged = [
        str(c.get("name"))
        for group in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(group) or []
        if isinstance(c, dict) and ((c.get("securityContext") or {}).get("privileged") is True)
    ]
    found = []
    if volumes and not allow_host_path:
        listed = ", ".join(f'"{v}"' for v in volumes)
        found.append(f"hostPath volumes ({'volume' if len(volumes) == 1 else 'volumes'} {listed})")
    if privileged:
        listed = ", ".join(f'"{c}"' for c in privileged)
        found.append(
            f"privileged ({'container' if len(privileged) == 1 else 'containers'} {listed} "
            "must not set securityContext.privileged=true)"
        )
    if not found:
        return
    name = (pod.get("metadata") or {}).get("name") or ""
    raise StatusError(
        403,
        "Forbidden",
        f'pods "{name}" is forbidden: violates PodSecurity "baseline:latest": {", ".join(found)}',
        {"name": name, "kind": "pods"},
    )
