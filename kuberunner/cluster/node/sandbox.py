"""Linux isolation primitives for pod containers: namespaces, mounts and memory cgroups via ctypes.

Python 3.11 has no os.unshare/os.setns, so the few syscalls are called through libc here. The
launcher (`sandbox_launch`, a separate process) uses the namespace and mount calls; the runtime uses
`MemoryCgroup` and `isolation_available`. Nothing here touches asyncio.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
_SYS_PIVOT_ROOT = 155  # x86_64
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_OPEN_TREE_CLONE = 0x1
_OPEN_TREE_CLOEXEC = 0o2000000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_IDMAP = 0x00100000
_PR_CAPBSET_DROP = 24

# The capabilities containerd and docker give a container by default; everything else is dropped
# (CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_NET_ADMIN, CAP_SYS_MODULE among them).
DEFAULT_CAPABILITIES = frozenset(
    {
        0,  # CHOWN
        1,  # DAC_OVERRIDE
        3,  # FOWNER
        4,  # FSETID
        5,  # KILL
        6,  # SETGID
        7,  # SETUID
        8,  # SETPCAP
        10,  # NET_BIND_SERVICE
        13,  # NET_RAW
        18,  # SYS_CHROOT
        27,  # MKNOD
        29,  # AUDIT_WRITE
        31,  # SETFCAP
    }
)

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype is not None else None,
            ctypes.c_ulong(flags),
            data.encode() if data is not None else None,
        ),
        f"mount {source} on {target}",
    )


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_SYS_PIVOT_ROOT, new_root.encode(), put_old.encode()), "pivot_root")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def idmapped_clone(source: str, target: str, userns_fd: int) -> None:
    """Attach a copy of the mount at `source` to `target`, its owners shifted by `userns_fd`'s map."""
    fd = _libc.syscall(
        _SYS_OPEN_TREE, _AT_FDCWD, source.encode(), ctypes.c_uint(_OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC)
    )
    if fd < 0:
        _check(-1, f"open_tree {source}")
    try:
        attr = _MountAttr(_MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        _check(
            _libc.syscall(
                _SYS_MOUNT_SETATTR,
                fd,
                b"",
                ctypes.c_uint(_AT_EMPTY_PATH),
                ctypes.byref(attr),
                ctypes.c_size_t(ctypes.sizeof(attr)),
            ),
            f"idmap {source}",
        )
        _check(
            _libc.syscall(
                _SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, target.encode(), ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH)
            ),
            f"move_mount to {target}",
        )
    finally:
        os.close(fd)


def drop_capabilities(keep: frozenset[int] = DEFAULT_CAPABILITIES) -> None:
    """Shrink the bounding set: whatever runs next as root gets only `keep`."""
    with open("/proc/sys/kernel/cap_last_cap") as file:
        last = int(file.read())
    for cap in range(last + 1):
        if cap not in keep:
            _check(_libc.prctl(_PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0), f"drop capability {cap}")


def isolation_available() -> bool:
    """Namespaces, overlay and cgroups need root; anything else runs as plain process groups."""
    return os.geteuid() == 0


@dataclass(frozen=True, slots=True)
class MemoryUsage:
    oom_killed: bool


class MemoryCgroup:
    """One cgroup v1 memory group for one container instance, with swap use disabled.

    The container's processes join it themselves (the launcher writes to `tasks` before exec), so
    the launcher's own memory is never charged to the container.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ended_by_oom_guard = False
        """Set by `oomguard` when it ended the container for running out of memory."""

    @classmethod
    def create(cls, root: Path, name: str, limit_bytes: int) -> MemoryCgroup:
        path = root / name
        path.mkdir(parents=True, exist_ok=True)
        group = cls(path)
        group._write("memory.limit_in_bytes", str(limit_bytes))
        # No kernel OOM kill of single tasks: `oomguard` ends the whole container instead (cgroup v2's
        # memory.oom.group), so no process of it lives on to report the kill as its own exit code.
        with contextlib.suppress(OSError):
            group._write("memory.oom_control", "1")
        for name_, value in (("memory.memsw.limit_in_bytes", str(limit_bytes)), ("memory.swappiness", "0")):
            # Without swap accounting on this kernel there is no swap use to disable.
            with contextlib.suppress(OSError):
                group._write(name_, value)
        return group

    def _write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def oom_killed(self) -> bool:
        """True when the group ran out of memory and the kernel or `oomguard` killed for it."""
        return self.ended_by_oom_guard or self._oom_control("oom_kill") > 0

    def under_oom(self) -> bool:
        """True while tasks of the group wait for memory (the kernel's OOM killer is off for it)."""
        return self._oom_control("under_oom") > 0

    def _oom_control(self, key: str) -> int:
        try:
            text = (self.path / "memory.oom_control").read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
        return 0

    def tasks(self) -> list[int]:
        try:
            return [int(t) for t in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def remove(self) -> bool:
        """rmdir the group; False while tasks are still in it."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                return False
            raise
        return True


def parse_quantity(text: str) -> int:
    """A Kubernetes resource quantity (memory) in bytes: 32Mi, 300M, 1Gi, 1e6, 512."""
    suffixes = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "Pi": 2**50,
        "Ei": 2**60,
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
        "P": 10**15,
        "E": 10**18,
        "m": 0,
    }
    text = text.strip()
    for suffix, factor in suffixes.items():
        if text.endswith(suffix) and text[: -len(suffix)]:
            number = float(text[: -len(suffix)])
            return int(number * factor) if factor else int(number / 1000)
    return int(float(text))
