"""The container runtime: real processes for pod containers, their CRI logs, attach fan-out and exec.

This plays containerd's part. Each container starts through the `sandbox_launch` process (its own
namespaces over an overlay of `/` when running as root; a plain process group otherwise),
its stdout and stderr are separate pipes that feed the CRI log writer and any attached sessions, and
its stdin is a pipe the runtime keeps open. Pod status and the HTTP side are the kubelet's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kuberunner.cluster.node import hidden, oomguard, pipes, rootfs, sandbox
from kuberunner.cluster.node.crilog import CriLogWriter, Stream

log = logging.getLogger(__name__)

ATTACH_QUEUE_CHUNKS = 64
"""Per attach session: at most this many pipe reads (64 KiB each) wait for a slow client."""
ATTACH_STALL_SECONDS = 10.0
"""A client that takes no output for this long is detached, so it cannot stall the container."""
ORPHAN_PIPE_SECONDS = 2.0
"""Without a PID namespace, a background child may hold the pipes after PID 1 exits; wait this long."""


class StartFailed(Exception):
    """The process could not be started (bad command, bad workingDir, namespace setup failure)."""


@dataclass(frozen=True, slots=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log_path: Path
    mounts: list[Mount] = field(default_factory=list)
    stdin: bool = False
    stdin_once: bool = False
    memory_limit: int | None = None
    hostname: str = ""


Reason = Literal["Completed", "Error", "OOMKilled", "StartError"]


@dataclass(frozen=True, slots=True)
class ExitStatus:
    code: int
    signal: int | None
    reason: Reason
    finished_ns: int
    message: str | None = None


class LogFile:
    """A container instance's CRI log, plus the wake-up that lets log followers avoid polling."""

    def __init__(self, path: Path) -> None:
        self.path = path
        private_dir(path.parent)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.closed = False
        self._changed = asyncio.Event()

    def append(self, records: list[bytes]) -> None:
        if records and self._fd >= 0:
            os.write(self._fd, b"".join(records))
            self._notify()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            pipes.close_quietly(self._fd)
            self._fd = -1
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, max_wait: float) -> None:
        """Return after the next append or close, or after `max_wait` seconds."""
        event = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), max_wait)


class AttachSink:
    """One attach session's view of the container's output: a bounded queue of raw pipe reads."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Stream, bytes] | None] = asyncio.Queue(ATTACH_QUEUE_CHUNKS)
        self.detached = False
        """Set when the runtime dropped this session for not keeping up; it ends once drained."""


class Container:
    """One running (or finished) container instance."""

    def __init__(self, runtime: Runtime, config: ContainerConfig, container_id: str) -> None:
        self.runtime = runtime
        self.config = config
        self.id = container_id
        self.pid = 0
        self.started_ns = 0
        self.log = LogFile(config.log_path)
        self.exited: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()
        self._sinks: set[AttachSink] = set()
        self._stdin_w: int | None = None
        self._stdin_lock = asyncio.Lock()
        self._cgroup: sandbox.MemoryCgroup | None = None
        self._launcher = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.pid > 0 and not self.exited.done()

    def signal(self, sig: int) -> None:
        if not self.running:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.runtime.isolate:
                os.kill(self.pid, sig)
            else:
                os.killpg(self.pid, sig)

    def attach(self) -> AttachSink:
        sink = AttachSink()
        if self.exited.done() or self.log.closed:
            sink.queue.put_nowait(None)
        else:
            self._sinks.add(sink)
        return sink

    def detach(self, sink: AttachSink) -> None:
        self._sinks.discard(sink)

    async def write_stdin(self, data: bytes) -> None:
        """Feed the container's stdin; bytes are dropped when it has none or it was closed."""
        async with self._stdin_lock:
            if self._stdin_w is None:
                return
            try:
                await pipes.write_all(self._stdin_w, data)
            except OSError:
                self.close_stdin()

    def close_stdin(self) -> None:
        fd, self._stdin_w = self._stdin_w, None
        pipes.close_quietly(fd)

    async def _fan_out(self, stream: Stream, chunk: bytes) -> None:
        for sink in list(self._sinks):
            try:
                await asyncio.wait_for(sink.queue.put((stream, chunk)), ATTACH_STALL_SECONDS)
            except TimeoutError:
                log.warning("attach client of container %s stalled; detaching it", self.config.name)
                self._sinks.discard(sink)
                sink.detached = True

    async def _pump(self, fd: int, stream: Stream, writer: CriLogWriter) -> None:
        try:
            while chunk := await pipes.read_some(fd):
                self.log.append(writer.feed(stream, chunk, time.time_ns()))
                await self._fan_out(stream, chunk)
        finally:
            self.log.append(writer.close(stream, time.time_ns()))
            pipes.close_quietly(fd)


def private_dir(path: Path) -> None:
    """Create `path` (and missing parents) readable by this user only; what a job wrote or a pod's
    secrets hold must not be readable by other users of the host, whatever the directory's place."""
    if not path.is_dir():
        private_dir(path.parent)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
    os.chmod(path, 0o700)


class Runtime:
    """Starts containers and execs; owns the state directory's `containers/` and the cgroups.

    As root, each container gets a user namespace whose root is host uid `UID_BASE` (when the kernel
    allows one and id-mapped mounts), its own mount, PID, UTS, IPC and cgroup namespaces, a runtime's
    default capabilities, and a root file system without the host's secrets (`rootfs`, `hidden`).
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        cgroup_root: Path | None,
        isolate: bool,
        user_namespaces: bool = True,
        hidden_paths: Collection[Path] = (),
    ) -> None:
        self.state_dir = state_dir
        self.cgroup_root = cgroup_root
        self.isolate = isolate
        self.user_namespaces = isolate and user_namespaces
        self.containers: set[Container] = set()
        self._hidden_paths = (state_dir, *hidden_paths)
        private_dir(state_dir)
        private_dir(state_dir / "containers")

    @property
    def container_root(self) -> int | None:
        """The host uid that is root in containers, for owning volumes; None when not running as root."""
        if not self.isolate:
            return None
        return hidden.UID_BASE if self.user_namespaces else 0

    def _spawn(self, config: dict[str, Any], stdio: tuple[int, int, int], status_w: int) -> int:
        config_path = self.state_dir / "containers" / f"launch-{secrets.token_hex(8)}.json"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(config, file)
        actions = [(os.POSIX_SPAWN_DUP2, src, dst) for dst, src in enumerate((*stdio, status_w))]
        argv = [sys.executable, "-m", "kuberunner.cluster.node.sandbox_launch", str(config_path)]
        return os.posix_spawn(sys.executable, argv, dict(os.environ), file_actions=actions, setsid=True)

    async def start(self, config: ContainerConfig) -> Container:
        """Start the container; returns once its process runs. Raises StartFailed."""
        container = Container(self, config, secrets.token_hex(32))
        base = self.state_dir / "containers" / container.id
        launch: dict[str, Any] = {
            "mode": "run",
            "isolate": self.isolate,
            "argv": config.argv,
            "env": config.env,
            "cwd": config.cwd,
            "mounts": [
                {"source": m.source, "target": m.target, "readOnly": m.read_only} for m in config.mounts
            ],
            "hostname": config.hostname,
        }
        if self.isolate:
            parts = ("upper", "work", "merged", "lower")
            private_dir(base)
            for part in parts:
                (base / part).mkdir(exist_ok=True)
            launch["rootfs"] = {p: str(base / p) for p in parts}
            launch["empty"], launch["absent"] = hidden.masked_paths(self._hidden_paths)
            if self.user_namespaces:
                launch["userns"] = {"base": hidden.UID_BASE, "size": rootfs.ID_RANGE}
        if config.memory_limit is not None and self.cgroup_root is not None:
            container._cgroup = sandbox.MemoryCgroup.create(
                self.cgroup_root, container.id, config.memory_limit
            )
            launch["cgroup_tasks"] = str(container._cgroup.path / "tasks")
        out_r, out_w = pipes.make_pipe()
        err_r, err_w = pipes.make_pipe()
        status_r, status_w = pipes.make_pipe()
        if config.stdin:
            stdin_r, container._stdin_w = pipes.make_pipe()
        else:
            stdin_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            container._launcher = self._spawn(launch, (stdin_r, out_w, err_w), status_w)
        except OSError as exc:
            for fd in (out_r, err_r, status_r, container._stdin_w):
                pipes.close_quietly(fd)
            raise StartFailed(f"failed to start launcher: {exc}") from exc
        finally:
            for fd in (stdin_r, out_w, err_w, status_w):
                pipes.close_quietly(fd)
        status = _StatusReader(status_r)
        first = await status.next_event()
        if first.get("event") != "started":
            await pipes.reap(container._launcher)
            container.close_stdin()
            pipes.close_quietly(out_r)
            pipes.close_quietly(err_r)
            status.close()
            container.log.close()
            self._cleanup(container)
            raise StartFailed(str(first.get("message", "the container process could not be started")))
        container.pid = int(first["pid"])
        container.started_ns = time.time_ns()
        if first.get("warning") and self.user_namespaces:
            self.user_namespaces = False
            log.warning("containers run as the host's root, without a user namespace: %s", first["warning"])
        self.containers.add(container)
        container._task = asyncio.get_running_loop().create_task(
            self._supervise(container, status, out_r, err_r), name=f"container {config.name}"
        )
        return container

    async def _supervise(self, container: Container, status: _StatusReader, out_r: int, err_r: int) -> None:
        oom_guard = None
        if container._cgroup is not None:
            oom_guard = asyncio.get_running_loop().create_task(
                oomguard.kill_container_on_oom(container.pid, container._cgroup),
                name=f"oom guard {container.id}",
            )
        try:
            await self._supervise_until_exit(container, status, out_r, err_r)
        finally:
            if oom_guard is not None:
                oom_guard.cancel()

    async def _supervise_until_exit(
        self, container: Container, status: _StatusReader, out_r: int, err_r: int
    ) -> None:
        writer = CriLogWriter()
        pumps = asyncio.gather(
            container._pump(out_r, "stdout", writer), container._pump(err_r, "stderr", writer)
        )
        try:
            event = await status.next_event()
            code = int(event.get("code", 137))
            sig = event.get("signal")
            if self.isolate:
                await pumps
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(pumps), ORPHAN_PIPE_SECONDS)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(container.pid, signal.SIGKILL)
                    await pumps
            await pipes.reap(container._launcher)
        except BaseException:
            pumps.cancel()
            raise
        finally:
            status.close()
            container.close_stdin()
            container.log.close()
        oom = container._cgroup is not None and container._cgroup.oom_killed()
        reason: Reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        for sink in list(container._sinks):
            with contextlib.suppress(asyncio.QueueFull):
                sink.queue.put_nowait(None)
        container._sinks.clear()
        await self._cleanup_later(container)
        container.exited.set_result(
            ExitStatus(
                code=code,
                signal=sig if isinstance(sig, int) else None,
                reason=reason,
                finished_ns=time.time_ns(),
            )
        )

    async def _cleanup_later(self, container: Container) -> None:
        """The cgroup can be removed only once the kernel has finished killing its tasks."""
        for _ in range(100):
            if self._cleanup(container):
                return
            await asyncio.sleep(0.05)
        log.warning("could not remove the cgroup of container %s", container.config.name)

    def _cleanup(self, container: Container) -> bool:
        self.containers.discard(container)
        shutil.rmtree(self.state_dir / "containers" / container.id, ignore_errors=True)
        return container._cgroup is None or container._cgroup.remove()

    async def exec(self, container: Container, argv: list[str], *, stdin: bool) -> ExecProcess:
        """Run `argv` inside `container` (its namespaces, env, workingDir, cgroup). Raises StartFailed."""
        if not container.running:
            raise StartFailed(f"container {container.id} is not running")
        cfg = container.config
        launch: dict[str, Any] = {
            "mode": "exec",
            "isolate": self.isolate,
            "argv": argv,
            "env": cfg.env,
            "cwd": cfg.cwd,
            "target_pid": container.pid,
        }
        if container._cgroup is not None:
            launch["cgroup_tasks"] = str(container._cgroup.path / "tasks")
        out_r, out_w = pipes.make_pipe()
        err_r, err_w = pipes.make_pipe()
        status_r, status_w = pipes.make_pipe()
        stdin_w: int | None = None
        if stdin:
            stdin_r, stdin_w = pipes.make_pipe()
        else:
            stdin_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            launcher = self._spawn(launch, (stdin_r, out_w, err_w), status_w)
        except OSError as exc:
            for fd in (out_r, err_r, status_r, stdin_w):
                pipes.close_quietly(fd)
            raise StartFailed(str(exc)) from exc
        finally:
            for fd in (stdin_r, out_w, err_w, status_w):
                pipes.close_quietly(fd)
        process = ExecProcess(launcher, _StatusReader(status_r), out_r, err_r, stdin_w)
        first = await process.status.next_event()
        if first.get("event") != "started":
            await process.close()
            raise StartFailed(str(first.get("message", "exec failed")))
        process.pid = int(first["pid"])
        return process

    async def shutdown(self) -> None:
        for container in list(self.containers):
            container.signal(signal.SIGKILL)
        for container in list(self.containers):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(container.exited), 10)


class ExecProcess:
    """A process started by exec: its pipes, and its exit code once `wait` returns."""

    def __init__(self, launcher: int, status: _StatusReader, out_r: int, err_r: int, stdin_w: int | None):
        self.launcher = launcher
        self.status = status
        self.stdout: int | None = out_r
        self.stderr: int | None = err_r
        self.stdin: int | None = stdin_w
        self.pid = 0

    def close_stdin(self) -> None:
        fd, self.stdin = self.stdin, None
        pipes.close_quietly(fd)

    async def wait(self) -> int:
        event = await self.status.next_event()
        await pipes.reap(self.launcher)
        self.status.close()
        return int(event.get("code", 137))

    async def close(self) -> None:
        self.close_stdin()
        for fd in (self.stdout, self.stderr):
            pipes.close_quietly(fd)
        self.stdout = self.stderr = None
        self.status.close()
        await pipes.reap(self.launcher)


class _StatusReader:
    """JSON lines from a launcher's fd 3 (a few short lines per process, so a small bound)."""

    MAX_LINE = 16384

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd
        self._buffer = b""

    async def next_event(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            if self.fd is None or len(self._buffer) > self.MAX_LINE:
                return {"event": "error", "message": "the launcher ended without a report"}
            chunk = await pipes.read_some(self.fd)
            if not chunk:
                self.close()
                return {"event": "error", "message": "the launcher ended without a report"}
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            event = json.loads(line)
        except ValueError:
            return {"event": "error", "message": "unreadable launcher report"}
        return event if isinstance(event, dict) else {"event": "error", "message": "bad launcher report"}

    def close(self) -> None:
        fd, self.fd = self.fd, None
        pipes.close_quietly(fd)
