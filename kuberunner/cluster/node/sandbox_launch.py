"""The per-process launcher: `python -m kuberunner.cluster.node.sandbox_launch CONFIG.json`.

The kubelet cannot fork safely from its event loop and cannot enter namespaces without affecting
itself, so each container (and each exec) starts through this small single-threaded process. It sets
up the sandbox, forks the real process (PID 1 of a new PID namespace when isolated), stays outside,
waits for it and reports JSON lines on fd 3:

    {"event": "started", "pid": HOST_PID, "warning": TEXT}  (TEXT: "" or what isolation is missing)
    {"event": "error", "message": TEXT}          (the process could not start)
    {"event": "exited", "code": N, "signal": S}  (S is null unless killed by a signal; then N = 128+S)

Its fds 0-2 are the container's stdio; it never writes to them itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import signal
import sys
from typing import Any

from kuberunner.cluster.node import rootfs, sandbox

_PR_SET_PDEATHSIG = 1
_STATUS_FD = 3


def _report(event: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(_STATUS_FD, (json.dumps(event) + "\n").encode())


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _make_user_namespace(base: int, size: int) -> int:
    """An fd of a fresh user namespace mapping ids 0..size-1 to host ids base..base+size-1.

    A short-lived child creates it (the launcher itself must stay in the host's namespace to build
    the root file system), the launcher writes its maps from outside, and the fd keeps it alive.
    """
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(done_w)
            _die_with_parent()
            sandbox.unshare(sandbox.CLONE_NEWUSER)
            os.write(ready_w, b"y")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"y":
            raise OSError(errno.EPERM, "the kernel refused to create a user namespace")
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as file:
                file.write(f"0 {base} {size}\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)


def _become_container_root(userns_fd: int | None) -> None:
    """Join the container's user namespace as its root, keeping only a runtime's default capabilities."""
    if userns_fd is not None:
        sandbox.setns(userns_fd, sandbox.CLONE_NEWUSER)
        os.close(userns_fd)
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    sandbox.drop_capabilities()


def _child(
    config: dict[str, Any], merged: str | None, userns_fd: int | None, tasks: int | None, err_w: int
) -> None:
    """Runs in the forked child; never returns."""
    try:
        _die_with_parent()
        if tasks is not None:
            os.write(tasks, b"0")
            os.close(tasks)
        if merged is not None:
            sandbox.unshare(sandbox.CLONE_NEWCGROUP)
            rootfs.enter(merged)
        if config["isolate"]:
            _become_container_root(userns_fd)
        else:
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


class _Sandbox:
    """What the launcher set up before forking: the root to pivot into and the user namespace."""

    def __init__(self) -> None:
        self.merged: str | None = None
        self.userns_fd: int | None = None
        self.warning = ""


def _set_up_run(config: dict[str, Any]) -> _Sandbox:
    box = _Sandbox()
    userns: dict[str, int] = config.get("userns") or {}
    if userns:
        try:
            box.userns_fd = _make_user_namespace(int(userns["base"]), int(userns["size"]))
        except OSError as exc:
            box.warning = f"no user namespace ({exc.strerror or exc})"
    sandbox.unshare(sandbox.CLONE_NEWNS | sandbox.CLONE_NEWPID | sandbox.CLONE_NEWUTS | sandbox.CLONE_NEWIPC)
    sandbox.mount("none", "/", None, sandbox.MS_REC | sandbox.MS_PRIVATE)
    lower, shift = "/", 0
    if box.userns_fd is not None:
        try:
            sandbox.idmapped_clone("/", config["rootfs"]["lower"], box.userns_fd)
            lower, shift = config["rootfs"]["lower"], int(userns["base"])
        except OSError as exc:
            os.close(box.userns_fd)
            box.userns_fd = None
            box.warning = f"no user namespace (an id-mapped mount of / failed: {exc.strerror or exc})"
    box.merged = rootfs.build(config, lower, shift)
    if config.get("hostname"):
        sandbox.sethostname(config["hostname"])
    return box


def _set_up_exec(config: dict[str, Any]) -> _Sandbox:
    box = _Sandbox()
    pid = int(config["target_pid"])
    own_user = os.stat("/proc/self/ns/user").st_ino
    if os.stat(f"/proc/{pid}/ns/user").st_ino != own_user:
        box.userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    # The mount namespace last: the others are found through the host's /proc.
    for name, kind in (
        ("cgroup", sandbox.CLONE_NEWCGROUP),
        ("ipc", sandbox.CLONE_NEWIPC),
        ("uts", sandbox.CLONE_NEWUTS),
        ("pid", sandbox.CLONE_NEWPID),
        ("mnt", sandbox.CLONE_NEWNS),
    ):
        fd = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            sandbox.setns(fd, kind)
        finally:
            os.close(fd)
    return box


def main(argv: list[str]) -> int:
    os.set_inheritable(_STATUS_FD, False)
    _die_with_parent()
    os.umask(0o022)
    with open(argv[1]) as file:
        config = json.load(file)
    with contextlib.suppress(OSError):
        os.unlink(argv[1])
    box = _Sandbox()
    tasks: int | None = None
    try:
        if config.get("cgroup_tasks"):
            # Opened here: once in the container's mount namespace the host's cgroup files are gone.
            tasks = os.open(config["cgroup_tasks"], os.O_WRONLY | os.O_CLOEXEC)
        if config["mode"] == "run" and config["isolate"]:
            box = _set_up_run(config)
        elif config["mode"] == "exec" and config["isolate"]:
            box = _set_up_exec(config)
    except OSError as exc:
        _report({"event": "error", "message": f"failed to create containerd task: {exc}"})
        return 0
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(err_r)
        _child(config, box.merged, box.userns_fd, tasks, err_w)
    os.close(err_w)
    for fd in (tasks, box.userns_fd):
        if fd is not None:
            os.close(fd)
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
    _report({"event": "started", "pid": pid, "warning": box.warning})
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        _report({"event": "exited", "code": 128 + sig, "signal": sig})
    else:
        _report({"event": "exited", "code": os.waitstatus_to_exitcode(status), "signal": None})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
