"""Which host paths a container never sees, and which host uid is root inside it.

Containers run on the host's own file system, so everything secret on it is cut out of their root:
the cluster's state directory (API credentials, other pods' volumes and logs), anything registered
with `hide_from_containers` (the kubeconfig the cluster wrote, the runner's config), users' homes
and the system's temporary directories (where an in-process cluster keeps its state), and the
usual host secrets. Directories a job may expect to use (/tmp, /root, ...) become empty instead.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

UID_BASE = 0x60000000
"""Host uid (and gid) of root in a container's user namespace; 65536 ids from here are the container's.
Far above the ranges distributions hand out to users and to /etc/subuid."""

# /run and /var/run hold the host's service sockets (a docker.sock there would be the host's root)
# and, in a pod, its service account token.
EMPTY_DIRS = ("/tmp", "/var/tmp", "/root", "/home", "/run", "/var/run")
ABSENT = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/gitlab-runner",
    "/etc/ssl/private",
    "/etc/kubernetes",
    "/var/lib/kubelet",
)

_registered: set[str] = set()


def hide_from_containers(path: Path) -> None:
    """Keep `path` out of every container started from now on (for credentials written outside the
    state directory, such as `kuberunner cluster --kubeconfig-out`)."""
    _registered.add(os.path.realpath(path))


def masked_paths(extra: Iterable[Path]) -> tuple[list[str], list[str]]:
    """(directories that are empty in a container, paths that are absent), as real host paths."""
    empty = {os.path.realpath(p) for p in (*EMPTY_DIRS, tempfile.gettempdir())}
    absent = {os.path.realpath(p) for p in ABSENT} | {os.path.realpath(p) for p in extra}
    absent.update(glob.glob("/etc/ssh/ssh_host_*"))
    # Where `kuberunner` looks for the runner's config.toml by default.
    absent.add(os.path.realpath("config.toml"))
    absent |= _registered
    return sorted(empty), sorted(absent - empty)
