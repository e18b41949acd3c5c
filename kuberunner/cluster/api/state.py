"""The API server's per-app state, kept in one typed `web.AppKey` instead of module globals."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from aiohttp import web

from kuberunner.cluster.api.store import Store
from kuberunner.cluster.contracts import Kubelet


@dataclass(slots=True)
class ApiState:
    store: Store
    kubelet: Kubelet
    token: str
    """The one bearer token accepted; compared in constant time."""
    forbid: Collection[str] = ()
    """Denied requests, as `resource[/subresource]`, `verb` or `verb resource[/subresource]`."""
    server_address: str = "127.0.0.1:0"
    """host:port reported in /api's serverAddressByClientCIDRs."""
    user: str = "kuberunner"
    """The user name RBAC-style denials mention."""
    open_paths: frozenset[str] = field(
        default_factory=lambda: frozenset({"/healthz", "/livez", "/readyz", "/version"})
    )


STATE: web.AppKey[ApiState] = web.AppKey("kuberunner_api_state", ApiState)
