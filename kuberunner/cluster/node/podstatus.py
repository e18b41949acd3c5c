"""Pure pod-status bookkeeping: container states, conditions and the phase, as a kubelet reports them.

`PodState` is mutated by the kubelet's pod worker as things happen and rendered into the v1 JSON
`status` (k8s-protocol.md §1.5). No I/O here, so every transition is easy to test.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from kuberunner.cluster.node.crilog import format_rfc3339
from kuberunner.cluster.node.runtime import ExitStatus, LogFile

NODE_IP = "127.0.0.1"


def now() -> str:
    return format_rfc3339(time.time_ns())


def qualified_image(image: str) -> str:
    """The fully qualified reference a container runtime reports: `busybox` is
    `docker.io/library/busybox:latest`, `me/app:1` is `docker.io/me/app:1`."""
    if not image:
        return image
    first, slash, _ = image.partition("/")
    if not slash:
        image = f"docker.io/library/{image}"
    elif "." not in first and ":" not in first and first != "localhost":
        image = f"docker.io/{image}"
    last = image.rsplit("/", 1)[-1]
    if "@" not in last and ":" not in last:
        image += ":latest"
    return image


def _repository(image: str) -> str:
    if "@" in image:
        return image.split("@", 1)[0]
    head, _, last = image.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


@dataclass(slots=True)
class ContainerRecord:
    """One container of the pod across its instances (restarts)."""

    name: str
    spec: dict[str, Any]
    init: bool
    state: dict[str, Any] = field(default_factory=dict)
    last_state: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    container_id: str | None = None
    logs: list[LogFile] = field(default_factory=list)
    final: bool = False
    """No further instance will run (terminated for good)."""
    spec_changed: bool = False
    """The running instance was killed for a new spec (image): restart it whatever the policy says."""

    def waiting(self, reason: str, message: str | None = None) -> None:
        self.state = {"waiting": {"reason": reason} | ({"message": message} if message else {})}

    def running(self, container_id: str, started_ns: int) -> None:
        self.container_id = container_id
        self.state = {"running": {"startedAt": format_rfc3339(started_ns)}}

    def terminated(self, status: ExitStatus, started_ns: int, message: str | None = None) -> None:
        term: dict[str, Any] = {
            "exitCode": status.code,
            "reason": status.reason,
            # A container that never started: the Unix epoch, as the kubelet reports it.
            "startedAt": format_rfc3339(started_ns),
            "finishedAt": format_rfc3339(status.finished_ns),
        }
        if self.container_id:
            term["containerID"] = f"containerd://{self.container_id}"
        if status.signal is not None:
            term["signal"] = status.signal
        if message or status.message:
            term["message"] = message or status.message
        self.state = {"terminated": term}

    @property
    def exit_code(self) -> int | None:
        term = self.state.get("terminated")
        return int(term["exitCode"]) if term else None

    def render(self) -> dict[str, Any]:
        image = qualified_image(str(self.spec.get("image", "")))
        digest = hashlib.sha256(image.encode()).hexdigest()
        rendered: dict[str, Any] = {
            "name": self.name,
            "state": self.state or {"waiting": {"reason": "ContainerCreating"}},
            "lastState": self.last_state,
            "ready": "running" in self.state,
            "restartCount": self.restart_count,
            "image": image,
            "imageID": f"{_repository(image)}@sha256:{digest}",
            "started": "running" in self.state,
        }
        resources = self.spec.get("resources") or {}
        rendered["resources"] = {k: resources[k] for k in ("limits", "requests") if resources.get(k)}
        if self.container_id:
            rendered["containerID"] = f"containerd://{self.container_id}"
            mounts = [_mount_status(m) for m in self.spec.get("volumeMounts") or []]
            if mounts:
                rendered["volumeMounts"] = mounts
        return rendered


def _mount_status(mount: dict[str, Any]) -> dict[str, Any]:
    """A mount as the runtime reports it: a read-only one says recursive read-only is off."""
    status: dict[str, Any] = {"name": mount.get("name"), "mountPath": mount.get("mountPath")}
    if mount.get("readOnly"):
        status |= {"readOnly": True, "recursiveReadOnly": "Disabled"}
    return status


@dataclass(slots=True)
class PodState:
    init: list[ContainerRecord]
    apps: list[ContainerRecord]
    qos_class: str
    generation: int = 1
    """The spec generation this status is about: the kubelet's observedGeneration, on every condition."""
    start_time: str = field(default_factory=now)
    sandbox_ready: bool = False
    reason: str | None = None
    message: str | None = None
    failed: bool = False
    """The pod failed as a whole (an init container failed for good, or the deadline passed)."""
    _transitions: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def initialized(self) -> bool:
        return all(r.final and r.exit_code == 0 for r in self.init)

    def phase(self) -> str:
        if self.failed:
            return "Failed"
        if not self.initialized:
            return "Pending"
        if self.apps and all(r.final for r in self.apps):
            return "Succeeded" if all(r.exit_code == 0 for r in self.apps) else "Failed"
        if any("running" in r.state or r.restart_count > 0 or "terminated" in r.state for r in self.apps):
            return "Running"
        return "Pending"

    def _condition(
        self, kind: str, ok: bool, reason: str | None = None, message: str | None = None
    ) -> dict[str, Any]:
        value = "True" if ok else "False"
        previous = self._transitions.get(kind)
        if previous is None or previous[0] != value:
            self._transitions[kind] = (value, now())
        condition: dict[str, Any] = {
            "type": kind,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": self._transitions[kind][1],
            "observedGeneration": self.generation,
        }
        if not ok and reason:
            condition["reason"] = reason
        if not ok and message:
            condition["message"] = message
        return condition

    def conditions(self) -> list[dict[str, Any]]:
        phase = self.phase()
        done = phase in ("Succeeded", "Failed")
        unready = [r.name for r in self.apps if "running" not in r.state]
        incomplete = [r.name for r in self.init if not (r.final and r.exit_code == 0)]
        ready = not unready and not done
        ready_reason = "PodCompleted" if done else "ContainersNotReady"
        ready_message = None if done else f"containers with unready status: [{' '.join(unready)}]"
        return [
            self._condition("PodReadyToStartContainers", self.sandbox_ready and not done),
            self._condition(
                "Initialized",
                not incomplete,
                "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(incomplete)}]",
            ),
            self._condition("Ready", ready, ready_reason, ready_message),
            self._condition("ContainersReady", ready, ready_reason, ready_message),
            self._condition("PodScheduled", True),
        ]

    def render(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "phase": self.phase(),
            "conditions": self.conditions(),
            "hostIP": NODE_IP,
            "hostIPs": [{"ip": NODE_IP}],
            "podIP": NODE_IP,
            "podIPs": [{"ip": NODE_IP}],
            "startTime": self.start_time,
            "qosClass": self.qos_class,
            "containerStatuses": [r.render() for r in self.apps],
            "observedGeneration": self.generation,
        }
        if self.init:
            status["initContainerStatuses"] = [r.render() for r in self.init]
        if self.reason:
            status["reason"] = self.reason
        if self.message:
            status["message"] = self.message
        return status


def qos_class(pod: dict[str, Any]) -> str:
    containers = (pod["spec"].get("containers") or []) + (pod["spec"].get("initContainers") or [])
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("limits") or r.get("requests") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        if set(limits) != {"cpu", "memory"} or any(requests.get(k, limits[k]) != limits[k] for k in limits):
            return "Burstable"
    return "Guaranteed"
