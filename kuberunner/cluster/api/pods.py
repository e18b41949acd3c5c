"""Pod defaulting, the status a freshly scheduled pod gets, and the graceful-delete decision.

Pure functions over pod JSON. The store calls them; the kubelet takes over the status afterwards.
"""

from __future__ import annotations

from typing import Any

from kuberunner.cluster.api import kinds, validation

NODE_IP = "127.0.0.1"

# Volume sources whose defaultMode the API server fills in (0644).
_MODE_SOURCES = ("secret", "configMap", "projected", "downwardAPI")


def apply_defaults(pod: dict[str, Any]) -> None:
    """SetDefaults_Pod and friends, for the fields clients read back."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    for group in ("initContainers", "containers"):
        for ctr in spec.get(group) or []:
            _default_container(ctr)
    for vol in spec.get("volumes") or []:
        if not any(vol.get(s) is not None for s in validation.VOLUME_SOURCES):
            vol["emptyDir"] = {}
        for source in _MODE_SOURCES:
            if isinstance(vol.get(source), dict):
                vol[source].setdefault("defaultMode", 0o644)
        if isinstance(vol.get("hostPath"), dict):
            vol["hostPath"].setdefault("type", "")


def _default_container(ctr: dict[str, Any]) -> None:
    ctr.setdefault("terminationMessagePath", "/dev/termination-log")
    ctr.setdefault("terminationMessagePolicy", "File")
    ctr.setdefault("imagePullPolicy", _pull_policy(ctr.get("image") or ""))
    resources = ctr.setdefault("resources", {})
    limits = resources.get("limits")
    if isinstance(limits, dict) and limits:
        requests = resources.setdefault("requests", {})
        for name, value in limits.items():
            requests.setdefault(name, value)
    for port in ctr.get("ports") or []:
        port.setdefault("protocol", "TCP")


def _pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def default_tolerations(pod: dict[str, Any]) -> None:
    """The DefaultTolerationSeconds admission plugin: tolerate a not-ready or unreachable node for
    300 s unless the pod already says how long."""
    tolerations = pod["spec"].setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == key and t.get("effect") in (None, "", "NoExecute") for t in tolerations):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            )


def qos_class(pod: dict[str, Any]) -> str:
    """BestEffort without any requests or limits; Guaranteed when every container limits cpu and memory
    with requests equal to limits; Burstable otherwise."""
    spec = pod.get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    any_set = False
    guaranteed = True
    for ctr in containers:
        res = ctr.get("resources") or {}
        limits = res.get("limits") or {}
        requests = res.get("requests") or {}
        if limits or requests:
            any_set = True
        for name in ("cpu", "memory"):
            if name not in limits or str(requests.get(name, limits[name])) != str(limits[name]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def schedule(pod: dict[str, Any], node_name: str) -> None:
    """Bind to the node and set the status a pod has before the kubelet starts it."""
    stamp = kinds.rfc3339(kinds.now())
    pod["spec"]["nodeName"] = node_name
    pod["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": stamp,
                "observedGeneration": int(pod["metadata"].get("generation", 1)),
            }
        ],
        "hostIP": NODE_IP,
        "hostIPs": [{"ip": NODE_IP}],
        "podIP": NODE_IP,
        "podIPs": [{"ip": NODE_IP}],
        "startTime": stamp,
        "qosClass": qos_class(pod),
    }


def grace_period(pod: dict[str, Any], requested: int | None) -> int:
    """CheckGracefulDelete: the client's value, else the spec's; 0 for unbound or finished pods."""
    spec = pod.get("spec") or {}
    phase = (pod.get("status") or {}).get("phase")
    if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        return 0
    if requested is None:
        configured = spec.get("terminationGracePeriodSeconds")
        requested = configured if isinstance(configured, int) else 30
    # A negative period is treated as the shortest graceful one.
    return 1 if requested < 0 else requested
