"""The object store of the embedded API server: objects, resourceVersions, watches, pod lifecycle.

It implements `contracts.ObjectStore` for the kubelet and the verbs the HTTP handlers need. All
state lives in one event loop, so each synchronous method is atomic; the only awaits are the calls
into the kubelet, made after the store is consistent. Every change takes the next value of one
global resourceVersion and is published to `watch.WatchHub`.

Deletion follows the pod registry: a pod with a grace period is marked (deletionTimestamp, MODIFIED)
and handed to the kubelet, which calls `remove_pod` once its containers are gone; other objects go at
once. Objects whose ownerReferences all point to removed objects are then collected (the garbage
collector's background propagation), so a pod's script Secret goes with the pod.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import secrets as random_source
import uuid
from collections.abc import Callable
from typing import Any

from kuberunner.cluster import admission, events, kinds, patching, pods
from kuberunner.cluster.contracts import Kubelet, RawObject
from kuberunner.cluster.selectors import FieldSelector, LabelSelector
from kuberunner.cluster.status import StatusError, already_exists, bad_request, not_found
from kuberunner.cluster.watch import EventType, Subscription, WatchEvent, WatchHub

log = logging.getLogger(__name__)

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
Key = tuple[str, str]


class Store:
    def __init__(
        self,
        *,
        node_name: str = "kuberunner-node",
        history_size: int = 1024,
        max_queued_events: int = 2048,
        max_events: int = 2000,
    ) -> None:
        self.node_name = node_name
        self.kubelet: Kubelet | None = None
        """Set once by the server after the kubelet is built (it needs the store first)."""
        self._max_events = max_events
        self._rv = 0
        self._objects: dict[str, dict[Key, RawObject]] = {r: {} for r in kinds.RESOURCES}
        self._hub = WatchHub(history_size=history_size, max_queued=max_queued_events)
        self._tasks: set[asyncio.Task[Any]] = set()
        for ns in kinds.INITIAL_NAMESPACES:
            self._insert(
                "namespaces",
                admission.prepare_new(
                    "namespaces", admission.decode("namespaces", {"metadata": {"name": ns}})
                ),
            )

    # -- reading -------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, resource: str, namespace: str, name: str) -> RawObject | None:
        obj = self._objects[resource].get(self._key(resource, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def require(self, resource: str, namespace: str, name: str) -> RawObject:
        obj = self.get(resource, namespace, name)
        if obj is None:
            raise not_found(resource, name)
        return obj

    def list_objects(
        self,
        resource: str,
        namespace: str | None,
        *,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> tuple[list[RawObject], int]:
        """Matching objects sorted by namespace and name, and the list's resourceVersion."""
        match = self._matcher(labels, fields)
        found = [
            copy.deepcopy(obj)
            for (ns, _), obj in sorted(self._objects[resource].items())
            if (namespace is None or ns == namespace) and match(obj)
        ]
        return found, self._rv

    def watch(
        self,
        resource: str,
        namespace: str | None,
        *,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
        since: int | None = None,
    ) -> tuple[list[RawObject], Subscription]:
        """Initial objects (for a watch without a resourceVersion) and the live subscription.

        Raises `watch.Expired` when `since` is older than the history holds."""
        match = self._matcher(labels, fields)
        initial: list[RawObject] = []
        if since is None:
            initial, since = self.list_objects(resource, namespace, labels=labels, fields=fields)
        sub = self._hub.subscribe(resource=resource, namespace=namespace, matches=match, since_rv=since)
        return initial, sub

    def unwatch(self, sub: Subscription) -> None:
        self._hub.unsubscribe(sub)

    def close(self) -> None:
        """End every watch (server shutdown)."""
        self._hub.close_all()

    # -- the kubelet's side (contracts.ObjectStore) ---------------------------------------------

    def update_pod(self, namespace: str, name: str, mutate: Callable[[RawObject], None]) -> RawObject | None:
        current = self._objects["pods"].get((namespace, name))
        if current is None:
            return None
        new = copy.deepcopy(current)
        mutate(new)
        return self._replace("pods", current, new)

    def remove_pod(self, namespace: str, name: str, uid: str) -> None:
        current = self._objects["pods"].get((namespace, name))
        if current is not None and current["metadata"].get("uid") == uid:
            self._remove("pods", current)

    def record_event(self, involved: RawObject, *, reason: str, message: str, type_: str = "Normal") -> None:
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        if self._objects["namespaces"].get(("", namespace)) is None:
            return
        for event in self._objects["events"].values():
            if events.is_repeat(event, meta.get("uid"), reason, message):
                self._replace("events", event, events.repeated(event))
                return
        self._insert(
            "events",
            events.new_event(involved, reason=reason, message=message, type_=type_, node_name=self.node_name),
        )

    # -- the API verbs ------------------------------------------------------------------------

    async def create(
        self, resource: str, namespace: str | None, body: Any, *, dry_run: bool = False
    ) -> RawObject:
        obj = admission.decode(resource, body)
        admission.check_namespace(obj, namespace if kinds.RESOURCES[resource].namespaced else None)
        if namespace is not None and kinds.RESOURCES[resource].namespaced:
            self._require_namespace(namespace)
        obj = admission.prepare_new(resource, obj)
        meta = obj["metadata"]
        if not meta.get("name"):
            meta["name"] = self._generate_name(resource, namespace or "", meta["generateName"])
        if self._objects[resource].get(self._key(resource, namespace or "", meta["name"])) is not None:
            raise already_exists(resource, meta["name"])
        if resource == "pods":
            pods.schedule(obj, self.node_name)
        if dry_run:
            return obj
        created = self._insert(resource, obj)
        if resource == "pods" and self.kubelet is not None:
            await self.kubelet.pod_added(copy.deepcopy(created))
        return created

    async def replace(
        self, resource: str, namespace: str, name: str, body: Any, *, subresource: str | None = None
    ) -> RawObject:
        current = self._stored(resource, namespace, name)
        new = admission.decode(resource, body)
        new = admission.prepare_update(resource, current, new, subresource=subresource)
        return self._replace(resource, current, new)

    async def patch(
        self,
        resource: str,
        namespace: str,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
    ) -> tuple[RawObject, bool]:
        """Apply a patch; server-side apply of a missing object creates it. Returns (object, created)."""
        current = self._objects[resource].get(self._key(resource, namespace, name))
        if current is None:
            if patch_type == "application/apply-patch+yaml" and subresource is None:
                if not isinstance(patch, dict):
                    raise bad_request("apply patch body must be an object")
                return await self.create(resource, namespace, patch), True
            raise not_found(resource, name)
        base = copy.deepcopy(current)
        try:
            if patch_type == "application/merge-patch+json":
                if not isinstance(patch, dict):
                    raise patching.PatchError("merge patch body must be a JSON object", 400)
                result = patching.merge_patch(base, patch)
            elif patch_type == "application/json-patch+json":
                result = patching.json_patch(base, patch)
            else:
                result = patching.strategic_merge_patch(base, patch)
        except patching.PatchError as exc:
            if exc.code == 400:
                raise bad_request(str(exc)) from exc
            raise StatusError(422, "Invalid", str(exc)) from exc
        new = admission.decode(resource, result)
        new = admission.prepare_update(resource, current, new, subresource=subresource)
        return self._replace(resource, current, new), False

    async def delete(
        self,
        resource: str,
        namespace: str,
        name: str,
        *,
        grace: int | None = None,
        preconditions: dict[str, Any] | None = None,
    ) -> RawObject:
        """Returns the Pod for pods, a Success Status for everything else."""
        current = self._stored(resource, namespace, name)
        admission.check_preconditions(resource, current, preconditions or {})
        if resource == "namespaces":
            return await self._delete_namespace(current)
        if resource != "pods":
            self._remove(resource, current)
            return admission.success_status(resource, current)
        period = pods.grace_period(current, grace)
        if period == 0:
            last = self._remove("pods", current)
            await self._kubelet_deleting(last, 0)
            return last
        already = current["metadata"].get("deletionGracePeriodSeconds")
        if isinstance(already, int) and already <= period:
            return copy.deepcopy(current)
        marked = copy.deepcopy(current)
        deadline = kinds.now() + dt.timedelta(seconds=period)
        marked["metadata"]["deletionTimestamp"] = kinds.rfc3339(deadline)
        marked["metadata"]["deletionGracePeriodSeconds"] = period
        updated = self._replace("pods", current, marked)
        await self._kubelet_deleting(updated, period)
        return updated

    # -- internals ----------------------------------------------------------------------------

    @staticmethod
    def _key(resource: str, namespace: str, name: str) -> Key:
        return ("", name) if not kinds.RESOURCES[resource].namespaced else (namespace, name)

    @staticmethod
    def _matcher(labels: LabelSelector | None, fields: FieldSelector | None) -> Callable[[RawObject], bool]:
        label_sel = labels or LabelSelector()
        field_sel = fields or FieldSelector()
        return lambda obj: label_sel.matches(obj) and field_sel.matches(obj)

    def _stored(self, resource: str, namespace: str, name: str) -> RawObject:
        obj = self._objects[resource].get(self._key(resource, namespace, name))
        if obj is None:
            raise not_found(resource, name)
        return obj

    def _require_namespace(self, namespace: str) -> None:
        if self._objects["namespaces"].get(("", namespace)) is None:
            raise not_found("namespaces", namespace)

    def _generate_name(self, resource: str, namespace: str, prefix: str) -> str:
        for _ in range(8):
            name = prefix + "".join(random_source.choice(NAME_ALPHABET) for _ in range(5))
            if self._objects[resource].get(self._key(resource, namespace, name)) is None:
                return name
        raise StatusError(
            409,
            "AlreadyExists",
            f'{resource} "{prefix}" already exists, the server was not '
            "able to generate a unique name for the object",
            {"name": prefix, "kind": resource},
        )

    def _publish(self, type_: EventType, resource: str, obj: RawObject, old: RawObject | None = None) -> None:
        self._hub.publish(
            WatchEvent(
                type_, resource, obj["metadata"].get("namespace", ""), self._rv, copy.deepcopy(obj), old
            )
        )

    def _insert(self, resource: str, obj: RawObject) -> RawObject:
        self._rv += 1
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = kinds.rfc3339(kinds.now())
        meta["resourceVersion"] = str(self._rv)
        self._objects[resource][self._key(resource, meta.get("namespace", ""), meta["name"])] = obj
        self._publish("ADDED", resource, obj)
        if resource == "events" and len(self._objects["events"]) > self._max_events:
            oldest = min(
                self._objects["events"].values(), key=lambda e: int(e["metadata"]["resourceVersion"])
            )
            self._remove("events", oldest)
        return copy.deepcopy(obj)

    def _replace(self, resource: str, current: RawObject, new: RawObject) -> RawObject:
        """Store `new` in place of `current`; a no-op write keeps the resourceVersion (no event)."""
        new["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
        if new == current:
            return copy.deepcopy(current)
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        meta = current["metadata"]
        self._objects[resource][self._key(resource, meta.get("namespace", ""), meta["name"])] = new
        self._publish("MODIFIED", resource, new, old=current)
        return copy.deepcopy(new)

    def _remove(self, resource: str, current: RawObject) -> RawObject:
        meta = current["metadata"]
        del self._objects[resource][self._key(resource, meta.get("namespace", ""), meta["name"])]
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._publish("DELETED", resource, current)
        self._collect_dependents(meta.get("namespace", ""), meta.get("uid", ""))
        return copy.deepcopy(current)

    def _collect_dependents(self, namespace: str, owner_uid: str) -> None:
        for resource, objects in self._objects.items():
            if not kinds.RESOURCES[resource].namespaced:
                continue
            for (ns, _), obj in list(objects.items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if ns != namespace or not any(r.get("uid") == owner_uid for r in refs):
                    continue
                if any(self._uid_exists(namespace, r.get("uid")) for r in refs if r.get("uid") != owner_uid):
                    continue
                if resource == "pods":
                    self._spawn(self.delete("pods", ns, obj["metadata"]["name"]))
                elif obj["metadata"]["name"] and (ns, obj["metadata"]["name"]) in objects:
                    self._remove(resource, obj)

    def _uid_exists(self, namespace: str, uid: str | None) -> bool:
        return any(
            o["metadata"].get("uid") == uid
            for resource, objects in self._objects.items()
            for (ns, _), o in objects.items()
            if ns in (namespace, "")
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background deletion failed", exc_info=task.exception())

    async def _kubelet_deleting(self, pod: RawObject, grace: int) -> None:
        if self.kubelet is not None:
            await self.kubelet.pod_deleting(copy.deepcopy(pod), grace)
        elif grace > 0:
            self.remove_pod(pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"])

    async def _delete_namespace(self, current: RawObject) -> RawObject:
        name = current["metadata"]["name"]
        if name in kinds.INITIAL_NAMESPACES:
            raise StatusError(
                403,
                "Forbidden",
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                {"name": name, "kind": "namespaces"},
            )
        for resource, objects in self._objects.items():
            for (ns, obj_name), obj in list(objects.items()):
                if ns == name and (ns, obj_name) in objects:
                    if resource == "pods":
                        await self._kubelet_deleting(self._remove("pods", obj), 0)
                    else:
                        self._remove(resource, obj)
        self._remove("namespaces", current)
        return admission.success_status("namespaces", current)
