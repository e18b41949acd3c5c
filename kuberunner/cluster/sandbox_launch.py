"""The per-process launcher: `python -m kuberunner.cluster.sandbox_launch CONFIG.json`.

The kubelet cannot fork safely from its event loop and cannot enter namespaces without affecting
itself, so each container (and each exec) starts through this small single-threaded process. It sets
up the sandbox, forks the real process (PID 1 of a new PID namespace when isolated), stays outside,
waits for it and reports JSON lines on fd 3:

    {"event": "started", "pid": HOST_PID}
    {"event": "error", "message": TEXT}          (the process could not start)
    {"event": "exited", "code": N, "signal": S}  (S is null unless killed by a signal; then N = 128+S)

Its fds 0-2 are the container's stdio; it never writes to them itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
from typing import Any

from kuberunner.cluster import sandbox

_PR_SET_PDEATHSIG = 1
_STATUS_FD = 3


def _report(event: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(_STATUS_FD, (json.dumps(event) + "\n").encode())


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _prepare_rootfs(config: dict[str, Any]) -> str:
    """Mounts in our fresh mount namespace: overlay of `/`, /dev, /sys, a private /dev/shm, volumes."""
    rootfs = config["rootfs"]
    merged = rootfs["merged"]
    sandbox.mount("none", "/", None, sandbox.MS_REC | sandbox.MS_PRIVATE)
    sandbox.mount(
        "overlay",
        merged,
        "overlay",
        0,
        f"lowerdir=/,upperdir={rootfs['upper']},workdir={rootfs['work']}",
    )
    sandbox.mount("/dev", merged + "/dev", None, sandbox.MS_BIND | sandbox.MS_REC)
    # The host's /dev/shm is a separate tmpfs that the overlay does not cover: hide it.
    sandbox.mount("shm", merged + "/dev/shm", "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NODEV, "size=65536k")
    sandbox.mount("/sys", merged + "/sys", None, sandbox.MS_BIND | sandbox.MS_REC)
    for volume in config.get("mounts", []):
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
    return str(merged)


def _enter_rootfs(merged: str) -> None:
    """In the child (PID 1 of the new PID namespace): a fresh /proc, then make the overlay `/`."""
    sandbox.mount("proc", merged + "/proc", "proc", sandbox.MS_NOSUID | sandbox.MS_NODEV | sandbox.MS_NOEXEC)
    os.chdir(merged)
    sandbox.pivot_root(".", ".")
    sandbox.umount2(".", sandbox.MNT_DETACH)
    os.chdir("/")


def _child(config: dict[str, Any], merged: str | None, err_w: int) -> None:
    """Runs in the forked child; never returns."""
    try:
        _die_with_parent()
        if config.get("cgroup_tasks"):
            with open(config["cgroup_tasks"], "w") as tasks:
                tasks.write("0")
        if merged is not None:
            _enter_rootfs(merged)
        if not config["isolate"]:
            os.setsid()
        cwd = config.get("cwd") or "/"
        try:
            os.chdir(cwd)
        except OSError as exc:
            raise RuntimeError(f'chdir to cwd ("{cwd}") set in config.json failed: {exc.strerror}') from exc
        argv = config["argv"]
        env = config["env"]
        # Python ignores SIGPIPE and SIGXFSZ for itself; a container's processes must start with the
        # defaults, or `yes | head` ends in "Broken pipe" and exit 1 instead of dying quietly.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvpe(argv[0], argv, env)
        except FileNotFoundError:
            raise RuntimeError(f'exec: "{argv[0]}": executable file not found in $PATH') from None
        except PermissionError:
            raise RuntimeError(f'exec: "{argv[0]}": permission denied') from None
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(err_w, str(exc).encode()[:4000] or b"start failed")
    os._exit(127)


def main(argv: list[str]) -> int:
    os.set_inheritable(_STATUS_FD, False)
    _die_with_parent()
    with open(argv[1]) as file:
        config = json.load(file)
    with contextlib.suppress(OSError):
        os.unlink(argv[1])
    merged: str | None = None
    try:
        if config["mode"] == "run" and config["isolate"]:
            sandbox.unshare(sandbox.CLONE_NEWNS | sandbox.CLONE_NEWPID)
            merged = _prepare_rootfs(config)
        elif config["mode"] == "exec" and config["isolate"]:
            pid = int(config["target_pid"])
            ns_mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
            ns_pid = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY)
            sandbox.setns(ns_mnt, sandbox.CLONE_NEWNS)
            sandbox.setns(ns_pid, sandbox.CLONE_NEWPID)
            os.close(ns_mnt)
            os.close(ns_pid)
    except OSError as exc:
        _report({"event": "error", "message": f"failed to create containerd task: {exc}"})
        return 0
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(err_r)
        _child(config, merged, err_w)
    os.close(err_w)
    # Keep the container's stdio only in the child, so the pipes close when the container exits.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    message = b""
    while chunk := os.read(err_r, 4096):
        message += chunk
    os.close(err_r)
    if message:
        os.waitpid(pid, 0)
        _report({"event": "error", "message": message.decode(errors="replace")})
        return 0
    _report({"event": "started", "pid": pid})
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        _report({"event": "exited", "code": 128 + sig, "signal": sig})
    else:
        _report({"event": "exited", "code": os.waitstatus_to_exitcode(status), "signal": None})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
