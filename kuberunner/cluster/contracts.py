"""The seam between the API server half of the embedded cluster and its kubelet half.

The API server (`apiserver`, `store`, handlers) owns objects, resourceVersions, watches, validation
and HTTP. The kubelet (`kubelet`, `runtime`, `crilog`, `streaming`) owns container processes, pod
status, container logs and the attach/exec/log sub-resources. They talk only through these two
protocols, so each half is tested with a fake of the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

RawObject = dict[str, Any]
"""A Kubernetes object as JSON (pod, secret, configmap, event)."""


class ObjectStore(Protocol):
    """What the kubelet may do with API objects. Every change bumps the global resourceVersion
    and emits the matching watch event."""

    def get(self, resource: str, namespace: str, name: str) -> RawObject | None:
        """A deep copy of the object, or None. `resource` is the plural: pods, secrets, configmaps, events."""
        ...

    def update_pod(self, namespace: str, name: str, mutate: Callable[[RawObject], None]) -> RawObject | None:
        """Apply `mutate` to the stored pod in place (status and metadata), store it, emit MODIFIED.

        Returns the new copy, or None when the pod no longer exists (then `mutate` is not called)."""
        ...

    def remove_pod(self, namespace: str, name: str, uid: str) -> None:
        """Remove the pod for good (emit DELETED with its last state) when its uid still matches."""
        ...

    def record_event(self, involved: RawObject, *, reason: str, message: str, type_: str = "Normal") -> None:
        """Create a core/v1 Event about `involved` (a pod), as a kubelet does."""
        ...


class Kubelet(Protocol):
    """What the API server asks of the node."""

    async def pod_added(self, pod: RawObject) -> None:
        """A pod was created (and bound to this node): start its containers in the background."""
        ...

    async def pod_deleting(self, pod: RawObject, grace_seconds: int) -> None:
        """A graceful delete began: SIGTERM now, SIGKILL after `grace_seconds`, then `remove_pod`.

        With 0 the store has already removed the object; kill at once and clean up."""
        ...

    async def pod_updated(self, pod: RawObject) -> None:
        """A client changed the pod's spec (only images can change): restart the running containers
        whose image changed, as a kubelet does when a container's definition changes."""
        ...

    async def handle_log(self, request: web.Request, pod: RawObject) -> web.StreamResponse:
        """GET .../pods/{name}/log, for a pod the API server has found (auth already checked)."""
        ...

    async def handle_attach(self, request: web.Request, pod: RawObject) -> web.StreamResponse:
        """GET (WebSocket) or POST (SPDY, refused with a 400 Status) .../pods/{name}/attach."""
        ...

    async def handle_exec(self, request: web.Request, pod: RawObject) -> web.StreamResponse:
        """GET (WebSocket) or POST .../pods/{name}/exec."""
        ...

    async def shutdown(self) -> None:
        """Stop every container and remove everything this node created outside its state dir."""
        ...
