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

from kuberunner.cluster.api import (
    admission,
    events,
    kinds,
    managed,
    nodeobject,
    patching,
    podclasses,
    pods,
    podsecurity,
    unknown,
)
from kuberunner.cluster.api.selectors import FieldSelector, LabelSelector
from kuberunner.cluster.api.watch import EventType, Subscription, WatchEvent, WatchHub
from kuberunner.cluster.contracts import Kubelet, RawObject
from kuberunner.cluster.status import StatusError, already_exists, bad_request, not_found

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
        allow_host_path: bool = False,
    ) -> None:
        self.node_name = node_name
        self.allow_host_path = allow_host_path
        """hostPath volumes reach the host past the sandbox: refused unless set (`podsecurity`)."""
        self.kubelet: Kubelet | None = None
        """Set once by the server after the kubelet is built (it needs the store first)."""
        self._max_events = max_events
        self._rv = 0
        self._objects: dict[str, dict[Key, RawObject]] = {r: {} for r in kinds.RESOURCES}
        self._hub = WatchHub(history_size=history_size, max_queued=max_queued_events)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.root_ca = ""
        """PEM of the CA the server's certificate chains to, published in every namespace."""
        self._insert("nodes", nodeobject.node(node_name, pods.NODE_IP))
        for ns in kinds.INITIAL_NAMESPACES:
            self._insert_namespace(
                admission.prepare_new(
                    "namespaces", admission.decode("namespaces", {"metadata": {"name": ns}})
                )
            )

    def set_root_ca(self, ca_pem: str) -> None:
        """Publish the cluster CA as each namespace's kube-root-ca.crt ConfigMap (the root-CA
        publisher's job)."""
        self.root_ca = ca_pem
        for (_, name), current in list(self._objects["configmaps"].items()):
            if name == nodeobject.ROOT_CA_CONFIGMAP:
                new = copy.deepcopy(current)
                new["data"] = {"ca.crt": ca_pem}
                self._replace("configmaps", current, new)

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
        if new.get("status") != current.get("status"):
            self._manage(current, new, "kubelet", "Update", "status")
        return self._replace("pods", current, new)

    def remove_pod(self, namespace: str, name: str, uid: str) -> None:
        current = self._objects["pods"].get((namespace, name))
        if current is not None and current["metadata"].get("uid") == uid:
            self._remove("pods", current)

    def record_event(self, involved: RawObject, *, reason: str, message: str, type_: str = "Normal") -> None:
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        ns = self._objects["namespaces"].get(("", namespace))
        if ns is None or "deletionTimestamp" in ns["metadata"]:
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
        self,
        resource: str,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        manager: str | None = None,
        operation: str = "Update",
    ) -> RawObject:
        """`manager` names the client for managedFields (none recorded without one)."""
        obj = admission.decode(resource, body)
        admission.check_namespace(obj, namespace if kinds.RESOURCES[resource].namespaced else None)
        if resource == "nodes":
            raise admission.method_not_allowed()
        if namespace is not None and kinds.RESOURCES[resource].namespaced:
            self._require_namespace(namespace)
        obj = admission.prepare_new(resource, obj)
        meta = obj["metadata"]
        if not meta.get("name"):
            meta["name"] = self._generate_name(resource, namespace or "", meta["generateName"])
        if self._objects[resource].get(self._key(resource, namespace or "", meta["name"])) is not None:
            raise already_exists(resource, meta["name"])
        if namespace is not None and kinds.RESOURCES[resource].namespaced:
            self._require_active_namespace(resource, namespace, meta["name"])
        if manager is not None:
            # Before admission and scheduling: the fields they set are not the client's.
            managed.record(None, obj, manager=manager, operation=operation, time=kinds.rfc3339(kinds.now()))
        if resource == "pods":
            self._admit_service_account(obj)
            podclasses.admit_classes(obj)
            pods.default_tolerations(obj)
            podsecurity.check_pod(obj, allow_host_path=self.allow_host_path)
            pods.schedule(obj, self.node_name)
        if dry_run:
            return obj
        if resource == "namespaces":
            return self._insert_namespace(obj)
        created = self._insert(resource, obj)
        if resource == "pods" and self.kubelet is not None:
            await self.kubelet.pod_added(copy.deepcopy(created))
        return created

    async def replace(
        self,
        resource: str,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        manager: str | None = None,
    ) -> RawObject:
        current = self._stored(resource, namespace, name)
        new = admission.decode(resource, body)
        new = admission.prepare_update(resource, current, new, subresource=subresource)
        self._manage(current, new, manager, "Update", subresource)
        return await self._update(resource, current, new, dry_run=dry_run)

    async def patch(
        self,
        resource: str,
        namespace: str,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Ignore",
        warnings: list[str] | None = None,
        manager: str | None = None,
    ) -> tuple[RawObject, bool]:
        """Apply a patch; server-side apply of a missing object creates it. Returns (object, created).

        Unknown fields in the result are handled as `field_validation` says (`unknown`); the
        warnings to send are appended to `warnings`."""
        found: list[str] = []
        current = self._objects[resource].get(self._key(resource, namespace, name))
        if current is None:
            if patch_type == "application/apply-patch+yaml" and subresource is None:
                if not isinstance(patch, dict):
                    raise bad_request("apply patch body must be an object")
                found = unknown.check_patched(resource, patch_type, patch, patch, field_validation)
                created = await self.create(
                    resource, namespace, patch, dry_run=dry_run, manager=manager, operation="Apply"
                )
                if warnings is not None:
                    warnings.extend(found)
                return created, True
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
        found = unknown.check_patched(resource, patch_type, patch, result, field_validation)
        if warnings is not None:
            warnings.extend(found)
        new = admission.decode(resource, result)
        new = admission.prepare_update(resource, current, new, subresource=subresource)
        operation = "Apply" if patch_type == "application/apply-patch+yaml" else "Update"
        self._manage(current, new, manager, operation, subresource)
        return await self._update(resource, current, new, dry_run=dry_run), False

    async def delete(
        self,
        resource: str,
        namespace: str,
        name: str,
        *,
        grace: int | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> RawObject:
        """Returns the Pod for pods, a Success Status for everything else. A dry run answers what
        the deletion would return and changes nothing."""
        current = self._stored(resource, namespace, name)
        admission.check_preconditions(resource, current, preconditions or {})
        if dry_run:
            return self._dry_run_delete(resource, current, grace)
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

    def _require_active_namespace(self, resource: str, namespace: str, name: str) -> None:
        ns = self._objects["namespaces"][("", namespace)]
        if "deletionTimestamp" in ns["metadata"]:
            raise StatusError(
                403,
                "Forbidden",
                f'{resource} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                {
                    "name": name,
                    "kind": resource,
                    "causes": [
                        {
                            "reason": "NamespaceTerminating",
                            "message": f"namespace {namespace} is being terminated",
                            "field": "metadata.namespace",
                        }
                    ],
                },
            )

    def _admit_service_account(self, pod: RawObject) -> None:
        """The ServiceAccount admission plugin: default the account and require that it exists."""
        spec = pod["spec"]
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = spec["serviceAccount"] = account
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if self._objects["serviceaccounts"].get((namespace, account)) is None:
            raise StatusError(
                403,
                "Forbidden",
                f'pods "{name}" is forbidden: error looking up service account {namespace}/{account}: '
                f'serviceaccount "{account}" not found',
                {"name": name, "kind": "pods"},
            )

    def _insert_namespace(self, namespace: RawObject) -> RawObject:
        """A new namespace with what the controllers put in it."""
        created = self._insert("namespaces", namespace)
        name = created["metadata"]["name"]
        for resource, obj in (
            ("serviceaccounts", nodeobject.default_service_account(name)),
            ("configmaps", nodeobject.root_ca_configmap(name, self.root_ca)),
        ):
            self._insert(resource, admission.prepare_new(resource, admission.decode(resource, obj)))
        return created

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

    @staticmethod
    def _manage(
        current: RawObject, new: RawObject, manager: str | None, operation: str, subresource: str | None
    ) -> None:
        if manager is not None:
            managed.record(
                current,
                new,
                manager=manager,
                operation=operation,
                time=kinds.rfc3339(kinds.now()),
                subresource=subresource,
            )

    async def _update(self, resource: str, current: RawObject, new: RawObject, *, dry_run: bool) -> RawObject:
        """A client's write of an existing object; a pod whose images changed goes to the kubelet."""
        stored = self._replace(resource, current, new, dry_run=dry_run)
        if (
            resource == "pods"
            and not dry_run
            and self.kubelet is not None
            and _images(current) != _images(stored)
        ):
            await self.kubelet.pod_updated(copy.deepcopy(stored))
        return stored

    def _dry_run_delete(self, resource: str, current: RawObject, grace: int | None) -> RawObject:
        if resource != "pods":
            return admission.success_status(resource, current)
        shown = copy.deepcopy(current)
        period = pods.grace_period(current, grace)
        if period > 0 and "deletionTimestamp" not in shown["metadata"]:
            deadline = kinds.now() + dt.timedelta(seconds=period)
            shown["metadata"]["deletionTimestamp"] = kinds.rfc3339(deadline)
            shown["metadata"]["deletionGracePeriodSeconds"] = period
        return shown

    def _replace(
        self, resource: str, current: RawObject, new: RawObject, *, dry_run: bool = False
    ) -> RawObject:
        """Store `new` in place of `current`; a no-op write keeps the resourceVersion (no event)."""
        new["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
        if new == current or dry_run:
            return copy.deepcopy(new)
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
        if resource == "pods":
            self._finish_namespace(meta.get("namespace", ""))
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
        """Mark the namespace Terminating, delete its content (pods with their grace periods), and
        remove it once the last pod is gone, as the namespace controller does."""
        name = current["metadata"]["name"]
        if name in kinds.INITIAL_NAMESPACES:
            raise StatusError(
                403,
                "Forbidden",
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                {"name": name, "kind": "namespaces"},
            )
        if "deletionTimestamp" in current["metadata"]:
            return copy.deepcopy(current)
        marked = copy.deepcopy(current)
        marked["metadata"]["deletionTimestamp"] = kinds.rfc3339(kinds.now())
        marked["status"] = {"phase": "Terminating"}
        answer = self._replace("namespaces", current, marked)
        for resource, objects in self._objects.items():
            if resource in ("pods", "namespaces") or not kinds.RESOURCES[resource].namespaced:
                continue
            for (ns, obj_name), obj in list(objects.items()):
                if ns == name and (ns, obj_name) in objects:
                    self._remove(resource, obj)
        for ns, pod_name in list(self._objects["pods"]):
            pod = self._objects["pods"].get((ns, pod_name))
            if ns == name and pod is not None and "deletionTimestamp" not in pod["metadata"]:
                await self.delete("pods", ns, pod_name)
        self._finish_namespace(name)
        return answer

    def _finish_namespace(self, name: str) -> None:
        """Remove a terminating namespace once no pod is left in it."""
        namespace = self._objects["namespaces"].get(("", name))
        if namespace is None or "deletionTimestamp" not in namespace["metadata"]:
            return
        if any(ns == name for ns, _ in self._objects["pods"]):
            return
        for resource, objects in self._objects.items():
            if kinds.RESOURCES[resource].namespaced:
                for (ns, _), obj in list(objects.items()):
                    if ns == name:
                        self._remove(resource, obj)
        self._remove("namespaces", namespace)


def _images(pod: RawObject) -> list[Any]:
    spec = pod.get("spec") or {}
    return [c.get("image") for group in ("initContainers", "containers") for c in spec.get(group) or []]
