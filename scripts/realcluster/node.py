"""The node's namespaces and processes: create, start, watch, and take everything down again.

A `holder` process (`unshare --net --mount … sleep infinity`) owns the cluster's network and mount
namespaces: every component is started in them with `nsenter`, and when the last process in them is
gone the kernel removes them, their interfaces and their mounts. No `ip netns add`, whose bind mount
under /run/netns would outlive us on the machine. Pid files hold "pid starttime" so that a pid reused
after a reboot is never signalled.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .layout import CGROUP_PARENT, NODE_IP, NODE_PREFIX, SERVICE_IP, Layout
from .proc import Failure, run, tail

CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
CLONE_NEWNET = 0x40000000
IN_NAMESPACE_SETUP = f"""
set -e
ip link set lo up
ip link add rc0 type veth peer name rc0-peer
ip link set rc0-peer up
ip addr add {NODE_IP}/{NODE_PREFIX} dev rc0
ip link set rc0 up
mount --make-rshared /
mount -t tmpfs -o mode=0755 real-cluster-run /run
mount -t tmpfs -o mode=0755 real-cluster-log /var/log
for chain in PREROUTING OUTPUT; do
  iptables -t nat -A $chain -d {SERVICE_IP} -p tcp --dport 443 -j DNAT --to-destination {NODE_IP}:6443
done
"""
"""Inside the new namespaces only: the node's address, shared propagation for containerd and the kubelet,
and fresh /run and /var/log (containerd's state and shim sockets, pod netns files, pod logs and the
kubelet's /var/log/containers links), so nothing of them lands on the machine's file system. There is no
kube-proxy: two DNAT rules stand in for it for the one Service pods need, `kubernetes`, so in-cluster
config (KUBERNETES_SERVICE_HOST) reaches the API server as on any cluster."""


# -- process identity -------------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def read_pid(path: Path) -> int | None:
    """The pid in `path` if that very process still runs."""
    try:
        pid_text, start = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    pid = int(pid_text)
    return pid if _start_time(pid) == start else None


def write_pid(path: Path, pid: int) -> None:
    start = _start_time(pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid} {start}\n")


def _ns_inode(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


# -- the namespaces ---------------------------------------------------------------------------------------


def holder(layout: Layout) -> int | None:
    return read_pid(layout.pid_file("holder"))


def create_namespaces(layout: Layout) -> int:
    process = subprocess.Popen(
        ["unshare", "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=CLEAN_ENV,
    )
    deadline = time.monotonic() + 5
    # unshare execs sleep once the namespaces exist: wait until the pid's namespaces differ from ours.
    while (
        _ns_inode(process.pid, "net") in (None, _ns_inode(os.getpid(), "net"))
        or _comm(process.pid) != "sleep"
    ):
        if process.poll() is not None or time.monotonic() > deadline:
            raise Failure("could not create the cluster's namespaces with `unshare --net --mount`")
        time.sleep(0.01)
    write_pid(layout.pid_file("holder"), process.pid)
    (layout.run / "namespaces").write_text(
        f"{_ns_inode(process.pid, 'net')}\n{_ns_inode(process.pid, 'mnt')}\n"
    )
    run(
        ["nsenter", f"--target={process.pid}", "--net", "--mount", "--", "sh", "-c", IN_NAMESPACE_SETUP],
        env=CLEAN_ENV,
        quiet=True,
    )
    return process.pid


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def enter_network(holder_pid: int) -> None:
    """Moves this process into the cluster's network namespace, so its checks reach the node's address."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/proc/{holder_pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise Failure(f"setns into the cluster's network namespace: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def in_namespaces(holder_pid: int, argv: list[str]) -> list[str]:
    return ["nsenter", f"--target={holder_pid}", "--net", "--mount", "--", *argv]


# -- cgroups ----------------------------------------------------------------------------------------------


def cgroup_hierarchies(*, with_v2: bool = False) -> list[Path]:
    """The cgroup v1 mounts (the kubelet's cgroupRoot must exist in each); `with_v2` adds the cgroup2
    mount, where on this hybrid machine the kubelet and runc make the hugetlb part of each pod."""
    kinds = ("cgroup", "cgroup2") if with_v2 else ("cgroup",)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        if after.split()[0] in kinds:
            found.append(Path(before.split()[4]))
    return found


def create_cgroups() -> None:
    for hierarchy in cgroup_hierarchies():
        path = hierarchy / CGROUP_PARENT
        path.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            # A v1 cpuset child starts empty, and no task may join an empty cpuset.
            if (hierarchy / name).exists() and not (path / name).read_text().strip():
                (path / name).write_text((hierarchy / name).read_text())


def _cgroup_dirs_bottom_up() -> Iterator[Path]:
    for hierarchy in cgroup_hierarchies(with_v2=True):
        top = hierarchy / CGROUP_PARENT
        if top.is_dir():
            yield from (Path(d) for d, _, _ in sorted(os.walk(top), key=lambda x: -x[0].count("/")))


def cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for directory in _cgroup_dirs_bottom_up():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
    return pids


def remove_cgroups() -> list[Path]:
    left = []
    for directory in _cgroup_dirs_bottom_up():
        try:
            directory.rmdir()
        except OSError:
            left.append(directory)
    return left


# -- components -------------------------------------------------------------------------------------------


def start(layout: Layout, holder_pid: int, name: str, argv: list[str]) -> int:
    layout.logs.mkdir(parents=True, exist_ok=True)
    with layout.log(name).open("ab") as log:
        log.write(f"\n==== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            in_namespaces(holder_pid, argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=CLEAN_ENV,
            cwd=layout.state,
        )
    write_pid(layout.pid_file(name), process.pid)
    return process.pid


def wait_until(layout: Layout, name: str, ready: Callable[[], bool], *, within: float, what: str) -> None:
    """Until `ready()`; a component that dies or stays unready fails with the end of its log."""
    deadline = time.monotonic() + within
    while True:
        if read_pid(layout.pid_file(name)) is None:
            raise Failure(
                f"{name} exited while starting; the end of {layout.log(name)}:\n{tail(layout.log(name), 20)}"
            )
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            end = tail(layout.log(name), 20)
            raise Failure(f"{name}: {what} not within {within:.0f} s; the end of {layout.log(name)}:\n{end}")
        time.sleep(0.25)


def _processes_in(net: str | None, mnt: str | None) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        if (net and _ns_inode(pid, "net") == net) or (mnt and _ns_inode(pid, "mnt") == mnt):
            found.add(pid)
    return found


def _signal(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop_everything(layout: Layout, components: tuple[str, ...]) -> list[str]:
    """Stops the components (TERM, then KILL), the pods' processes and the holder; returns what is left."""
    for name in reversed(components):
        pid = read_pid(layout.pid_file(name))
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while read_pid(layout.pid_file(name)) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if read_pid(layout.pid_file(name)) is not None:
            os.kill(pid, signal.SIGKILL)
    net = mnt = None
    if (layout.run / "namespaces").exists():
        net, mnt = ([*(layout.run / "namespaces").read_text().split("\n"), "", ""])[:2]
    # Shims and containers outlive containerd; our own process may sit in the cluster's net namespace.
    deadline = time.monotonic() + 10
    while True:
        left = (_processes_in(net, mnt) | cgroup_pids()) - {os.getpid()}
        if not left or time.monotonic() > deadline:
            break
        _signal(left, signal.SIGKILL)
        time.sleep(0.1)
    problems = [f"process {pid} ({_comm(pid)}) survived SIGKILL" for pid in sorted(left)]
    problems += [f"cgroup {path} could not be removed" for path in remove_cgroups()]
    return problems
