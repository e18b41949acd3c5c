"""Pods a killed `kuberunner exec` left behind, found and deleted by the next `exec` on the cluster.

Every pod of an `exec` carries its owner label `exec-<machine>-<pid>-<start>`: the machine (a hash of
its machine id), the process id and the process's start time (so a reused pid is not taken for the
dead process). The next `exec` from the same machine deletes each such pod whose process is gone; a
pod whose process still runs belongs to a concurrent `exec` and is left alone. Pods of other machines
are not judged here: their activeDeadlineSeconds ends them in any case.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from pathlib import Path

from kuberunner.executor.podspec import OWNER_LABEL
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeError, NotFound

log = logging.getLogger(__name__)

EXEC_PREFIX = "exec-"


def _machine() -> str:
    for path in (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id")):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text:
            return hashlib.sha256(text.encode()).hexdigest()[:12]
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def exec_owner(pid: int | None = None) -> str:
    """This process's owner label value."""
    pid = os.getpid() if pid is None else pid
    return f"{EXEC_PREFIX}{_machine()}-{pid}-{_start_time(pid) or 0}"


def _dead(owner: str, machine: str) -> bool:
    """True when `owner` names a process of this machine that no longer runs."""
    parts = owner.removeprefix(EXEC_PREFIX).split("-")
    if len(parts) != 3 or parts[0] != machine or not parts[1].isdigit():
        return False
    return _start_time(int(parts[1])) != parts[2]


async def sweep_exec_orphans(client: KubeClient, namespace: str) -> list[str]:
    """Delete the pods of dead `exec` processes of this machine; their names, each logged."""
    machine = _machine()
    try:
        pods = await client.list_pods(namespace, label_selector=OWNER_LABEL)
    except KubeError as exc:
        log.warning("cannot look for pods left by a killed exec: %s", exc)
        return []
    deleted = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        owner = str((meta.get("labels") or {}).get(OWNER_LABEL, ""))
        name = str(meta.get("name", ""))
        if not name or not owner.startswith(EXEC_PREFIX) or not _dead(owner, machine):
            continue
        try:
            await client.delete_pod(namespace, name, grace_seconds=0)
        except NotFound:
            continue
        except KubeError as exc:
            log.warning("could not delete pod %s/%s left by a killed exec: %s", namespace, name, exc)
            continue
        log.warning("deleted pod %s/%s, left by a kuberunner exec that is gone", namespace, name)
        deleted.append(name)
    return deleted
