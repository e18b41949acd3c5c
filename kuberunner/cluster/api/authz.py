"""The `forbid` switch: deny chosen requests with the 403 Status a real RBAC denial produces.

It lets tests and users emulate clusters that, e.g., refuse `pods/exec` to a CI service account.
"""

from __future__ import annotations

from collections.abc import Collection

from kuberunner.cluster.api.state import ApiState
from kuberunner.cluster.status import StatusError


def denied(forbid: Collection[str], *, verb: str, resource: str, subresource: str | None) -> bool:
    full = f"{resource}/{subresource}" if subresource else resource
    return any(" ".join(e.split()) in (full, verb, f"{verb} {full}") for e in forbid)


def authorize(
    state: ApiState,
    *,
    verb: str,
    resource: str,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> None:
    """Raise 403 Forbidden when `state.forbid` names this request."""
    if not state.forbid or not denied(state.forbid, verb=verb, resource=resource, subresource=subresource):
        return
    full = f"{resource}/{subresource}" if subresource else resource
    subject = f'{resource} "{name}"' if name else resource
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    details: dict[str, str] = {"kind": resource}
    if name:
        details = {"name": name, "kind": resource}
    raise StatusError(
        403,
        "Forbidden",
        f'{subject} is forbidden: User "{state.user}" cannot {verb} resource "{full}" '
        f'in API group "" {scope}',
        details,
    )
