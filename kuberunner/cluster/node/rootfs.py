"""The container's root file system, built by the launcher in its own mount namespace.

Containers have no images: `/` is a copy-on-write overlay of the host's root file system. What a
job must not see of the host is cut out of that overlay before it is mounted, by writing overlayfs
whiteouts (the path is absent) and opaque directories (the path is an empty directory the container
owns, for /tmp, /root and the like) into the container's upper layer. Other host mounts never show
through an overlay, so /dev, /sys and /proc are the container's own: a small tmpfs /dev with the
usual device nodes, a read-only sysfs (no cgroup files) and a procfs of the container's PID namespace.

`shift` is the host uid that is root inside the container (0 without a user namespace).
"""

from __future__ import annotations

import os
import stat
from typing import Any

from kuberunner.cluster.node import sandbox

ID_RANGE = 65536
"""User and group ids a container's user namespace maps (0..65535 inside)."""

_DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
_DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
_TTY_GID = 5


def _shifted(host_id: int, shift: int) -> int:
    return host_id + shift if shift and host_id < ID_RANGE else host_id


def _copy_parents(upper: str, path: str, shift: int) -> None:
    """Create `path`'s ancestors in the upper layer with the host's modes and (shifted) owners,
    since an upper-layer directory's attributes are what the container sees."""
    parts = path.strip("/").split("/")[:-1]
    current = ""
    for part in parts:
        current += "/" + part
        target = upper + current
        if os.path.lexists(target):
            continue
        info = os.lstat(current)
        os.mkdir(target)
        os.chmod(target, stat.S_IMODE(info.st_mode))
        os.lchown(target, _shifted(info.st_uid, shift), _shifted(info.st_gid, shift))


def mask(upper: str, *, empty: list[str], absent: list[str], shift: int) -> None:
    """Cut host paths out of the overlay: `empty` become empty directories, `absent` disappear."""
    root_dev = os.stat("/").st_dev
    done: list[str] = []
    for path, opaque in [(p, True) for p in empty] + [(p, False) for p in absent]:
        if path in ("", "/") or any(path == d or path.startswith(d + "/") for d in done):
            continue
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if info.st_dev != root_dev:
            continue  # another file system: the overlay of `/` never shows it
        _copy_parents(upper, path, shift)
        target = upper + path
        if opaque and stat.S_ISDIR(info.st_mode):
            os.mkdir(target)
            os.chmod(target, stat.S_IMODE(info.st_mode))
            os.lchown(target, _shifted(info.st_uid, shift), _shifted(info.st_gid, shift))
            os.setxattr(target, "trusted.overlay.opaque", b"y")
        else:
            os.mknod(target, stat.S_IFCHR, os.makedev(0, 0))
        done.append(path)


def _make_dev(merged: str, shift: int) -> None:
    dev = merged + "/dev"
    owner = f"uid={shift},gid={shift}"
    sandbox.mount("tmpfs", dev, "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NOEXEC, f"mode=755,size=64k,{owner}")
    for name, major, minor in _DEVICES:
        node = f"{dev}/{name}"
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(node, 0o666)
    for name, link in _DEV_LINKS:
        os.symlink(link, f"{dev}/{name}")
    os.mkdir(f"{dev}/pts")
    sandbox.mount(
        "devpts",
        f"{dev}/pts",
        "devpts",
        sandbox.MS_NOSUID | sandbox.MS_NOEXEC,
        f"newinstance,ptmxmode=0666,mode=0620,gid={shift + _TTY_GID}",
    )
    os.mkdir(f"{dev}/shm")
    sandbox.mount(
        "shm", f"{dev}/shm", "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NODEV, f"mode=1777,size=65536k,{owner}"
    )


def _bind_volumes(merged: str, mounts: list[dict[str, Any]]) -> None:
    for volume in mounts:
        source, target = volume["source"], merged + "/" + volume["target"].lstrip("/")
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.exists(target):
                open(target, "ab").close()
        sandbox.mount(source, target, None, sandbox.MS_BIND | sandbox.MS_REC)
        if volume.get("readOnly"):
            sandbox.mount(source, target, None, sandbox.MS_BIND | sandbox.MS_REMOUNT | sandbox.MS_RDONLY)


def build(config: dict[str, Any], lower: str, shift: int) -> str:
    """Mount the container's root at `rootfs.merged` (in a private mount namespace); returns it."""
    rootfs = config["rootfs"]
    upper, merged = rootfs["upper"], rootfs["merged"]
    os.chmod(upper, 0o755)
    os.chown(upper, shift, shift)
    mask(upper, empty=config.get("empty", []), absent=config.get("absent", []), shift=shift)
    sandbox.mount(
        "overlay", merged, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={rootfs['work']}"
    )
    _make_dev(merged, shift)
    sandbox.mount(
        "sysfs",
        merged + "/sys",
        "sysfs",
        sandbox.MS_RDONLY | sandbox.MS_NOSUID | sandbox.MS_NODEV | sandbox.MS_NOEXEC,
    )
    _bind_volumes(merged, config.get("mounts", []))
    return str(merged)


def enter(merged: str) -> None:
    """In PID 1 of the new PID namespace: its own /proc (kernel knobs read-only), then pivot into `merged`."""
    proc = merged + "/proc"
    sandbox.mount("proc", proc, "proc", sandbox.MS_NOSUID | sandbox.MS_NODEV | sandbox.MS_NOEXEC)
    for knob in ("/sys", "/sysrq-trigger"):
        if not os.path.exists(proc + knob):
            continue
        sandbox.mount(proc + knob, proc + knob, None, sandbox.MS_BIND | sandbox.MS_REC)
        sandbox.mount(
            proc + knob,
            proc + knob,
            None,
            sandbox.MS_BIND | sandbox.MS_REMOUNT | sandbox.MS_RDONLY | sandbox.MS_NOSUID | sandbox.MS_NODEV,
        )
    os.chdir(merged)
    sandbox.pivot_root(".", ".")
    sandbox.umount2(".", sandbox.MNT_DETACH)
    os.chdir("/")
