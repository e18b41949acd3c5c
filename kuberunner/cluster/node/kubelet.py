"""The node: `LocalKubelet` runs each pod's lifecycle on the local runtime and serves log/attach/exec.

One `PodWorker` task per pod walks ContainerCreating → init containers → containers → terminated,
writing status through `ObjectStore.update_pod` and kubelet events through `record_event`. Processes,
logs and namespaces are the runtime's; HTTP semantics live in `logs` and `streaming`.

restartPolicy: Never is exact. OnFailure and Always restart a container after it exits (non-zero only
for OnFailure; init containers only on failure) with the kubelet's doubling back-off from 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from kuberunner.cluster.contracts import ObjectStore, RawObject
from kuberunner.cluster.node import logs, sandbox, streaming, volumes
from kuberunner.cluster.node.podstatus import ContainerRecord, PodState, qos_class
from kuberunner.cluster.node.runtime import (
    Container,
    ContainerConfig,
    ExitStatus,
    LogFile,
    Mount,
    Runtime,
    StartFailed,
    private_dir,
)
from kuberunner.cluster.status import StatusError, bad_request

log = logging.getLogger(__name__)

DEFAULT_CGROUP_ROOT = Path("/sys/fs/cgroup/memory/kuberunner")
RETRY_SECONDS = 0.05
"""How often a pod waiting for a secret/configMap looks again: an in-memory lookup, so often enough
that a runner creating its scripts Secret right after the pod (as kuberunner does) waits ~nothing."""
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0


class PodWorker:
    """Everything the node knows about one pod."""

    def __init__(self, kubelet: LocalKubelet, pod: RawObject) -> None:
        self.kubelet = kubelet
        self.pod = pod
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = (
            meta.get("namespace", "default"),
            meta["name"],
            meta.get("uid", ""),
        )
        spec = pod["spec"]
        self.state = PodState(
            init=[ContainerRecord(str(c["name"]), c, True) for c in spec.get("initContainers") or []],
            apps=[ContainerRecord(str(c["name"]), c, False) for c in spec.get("containers") or []],
            qos_class=qos_class(pod),
            generation=int(meta.get("generation", 1)),
        )
        for record in self.state.init[:1]:
            record.waiting("ContainerCreating")
        for record in self.state.init[1:]:
            record.waiting("PodInitializing")
        for record in self.state.apps:
            record.waiting("PodInitializing" if self.state.init else "ContainerCreating")
        self.dir = kubelet.state_dir / "pods" / f"{self.namespace}_{self.name}_{self.uid}"
        self.stopping = asyncio.Event()
        self.running: dict[str, Container] = {}
        self.task: asyncio.Task[None] | None = None

    def records(self) -> list[ContainerRecord]:
        return self.state.init + self.state.apps

    def publish(self) -> None:
        status = self.state.render()

        def mutate(pod: RawObject) -> None:
            pod.setdefault("status", {}).update(status)

        self.kubelet.store.update_pod(self.namespace, self.name, mutate)

    def event(self, reason: str, message: str, type_: str = "Normal") -> None:
        self.kubelet.store.record_event(self.pod, reason=reason, message=message, type_=type_)

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def run(self) -> None:
        self.event(
            "Scheduled", f"Successfully assigned {self.namespace}/{self.name} to {self.kubelet.node_name}"
        )
        self.publish()
        paths = await self._volumes()
        if paths is None:
            return
        self.state.sandbox_ready = True
        self.publish()
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        watchdog = asyncio.ensure_future(self._deadline(float(deadline))) if deadline else None
        try:
            for index, record in enumerate(self.state.init):
                if not await self._run_container(record, paths):
                    if not self.stopping.is_set():
                        self.state.failed = True
                    self.publish()
                    return
                if index + 1 < len(self.state.init):
                    self.state.init[index + 1].waiting("ContainerCreating")
            for record in self.state.apps:
                record.waiting("ContainerCreating")
            self.publish()
            await asyncio.gather(*(self._run_container(r, paths) for r in self.state.apps))
            self.publish()
        finally:
            if watchdog is not None:
                watchdog.cancel()

    async def _volumes(self) -> dict[str, str] | None:
        reported = ""
        while not self.stopping.is_set():
            try:
                private_dir(self.dir)
                return volumes.prepare_volumes(
                    self.pod, self.kubelet.store, self.dir, owner=self.kubelet.runtime.container_root
                )
            except volumes.NotReady as exc:
                if exc.message != reported:
                    reported = exc.message
                    self.event("FailedMount", exc.message, "Warning")
            except (volumes.ConfigError, OSError) as exc:
                if str(exc) != reported:
                    reported = str(exc)
                    self.event("FailedMount", f"MountVolume.SetUp failed: {exc}", "Warning")
            await self.sleep(RETRY_SECONDS)
        return None

    async def _deadline(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.state.failed = True
        self.state.reason = "DeadlineExceeded"
        self.state.message = "Pod was active on the node longer than the specified deadline"
        self.event("DeadlineExceeded", self.state.message, "Warning")
        self.publish()
        await self.kill(int(self.pod["spec"].get("terminationGracePeriodSeconds", 30)), stop=True)

    def _hosts_mount(self) -> list[Mount]:
        """The pod's `hostAliases` in a kubelet-managed /etc/hosts, the host's entries first."""
        aliases = self.pod["spec"].get("hostAliases") or []
        if not aliases:
            return []
        hosts = self.dir / "etc-hosts"
        if not hosts.exists():
            try:
                base = Path("/etc/hosts").read_text(errors="replace")
            except OSError:
                base = "127.0.0.1\tlocalhost\n"
            extra = "".join(
                f"{a.get('ip', '')}\t{' '.join(str(h) for h in a.get('hostnames') or [])}\n" for a in aliases
            )
            hosts.write_text(base.rstrip("\n") + "\n\n# Entries added by HostAliases.\n" + extra)
            hosts.chmod(0o644)
        return [Mount(source=str(hosts), target="/etc/hosts", read_only=True)]

    def _config(self, record: ContainerRecord, paths: dict[str, str]) -> ContainerConfig:
        spec = record.spec
        env = volumes.container_env(spec, self.pod, self.kubelet.store)
        mounts = volumes.container_mounts(spec, paths) + self._hosts_mount()
        command = [volumes.expand(str(a), env) for a in spec.get("command") or []]
        # No images here, so no image entrypoint: `args` alone is the argv, as on a real node with an
        # image without ENTRYPOINT; the image's CMD stands in as `sh` only when both are empty.
        argv = command + [volumes.expand(str(a), env) for a in spec.get("args") or []] or ["sh"]
        return ContainerConfig(
            name=record.name,
            argv=argv,
            env=env,
            cwd=str(spec.get("workingDir") or "/"),
            log_path=self.dir / record.name / f"{record.restart_count}.log",
            mounts=mounts,
            stdin=bool(spec.get("stdin")),
            stdin_once=bool(spec.get("stdinOnce")),
            memory_limit=_memory_limit(spec),
            hostname=self.name,
        )

    async def _run_container(self, record: ContainerRecord, paths: dict[str, str]) -> bool:
        """Run the container (with restarts as the policy says); True when it ended with 0."""
        policy = str(self.pod["spec"].get("restartPolicy", "Always"))
        backoff = BACKOFF_START
        reported = ""
        while not self.stopping.is_set() and not self.state.failed:
            try:
                config = self._config(record, paths)
            except (volumes.NotReady, volumes.ConfigError) as exc:
                reason = exc.reason if isinstance(exc, volumes.NotReady) else "CreateContainerConfigError"
                record.waiting(reason, str(exc))
                if str(exc) != reported:
                    reported = str(exc)
                    self.event("Failed", f"Error: {exc}", "Warning")
                    self.publish()
                await self.sleep(RETRY_SECONDS)
                continue
            status = await self._start_and_wait(record, config)
            restart = policy == "Always" or (policy == "OnFailure" and status.code != 0)
            if record.init:
                restart = policy != "Never" and status.code != 0
            respec, record.spec_changed = record.spec_changed, False
            if not (restart or respec) or self.stopping.is_set() or self.state.failed:
                record.final = True
                self.publish()
                return status.code == 0
            record.last_state, record.restart_count = record.state, record.restart_count + 1
            if respec:  # killed for a new definition, not crashed: no back-off
                record.waiting("ContainerCreating")
                self.publish()
                continue
            record.waiting(
                "CrashLoopBackOff", f"back-off {int(backoff)}s restarting failed container={record.name}"
            )
            self.event(
                "BackOff",
                f"Back-off restarting failed container {record.name} in pod {self.name}_"
                f"{self.namespace}({self.uid})",
                "Warning",
            )
            self.publish()
            await self.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
        record.final = True
        return False

    async def _start_and_wait(self, record: ContainerRecord, config: ContainerConfig) -> ExitStatus:
        image = record.spec.get("image", "")
        self.event("Pulled", f'Container image "{image}" already present on machine')
        if record.spec.get("tty"):
            return self._start_error(
                record, config, "tty: true is not supported by this node (no terminal emulation)"
            )
        self.event("Created", f"Created container: {record.name}")
        try:
            container = await self.kubelet.runtime.start(config)
        except StartFailed as exc:
            return self._start_error(record, config, f"failed to create containerd task: {exc}")
        record.logs.append(container.log)
        self.running[record.name] = container
        record.running(container.id, container.started_ns)
        self.event("Started", f"Started container {record.name}")
        self.publish()
        if self.stopping.is_set():
            container.signal(signal.SIGKILL)
        try:
            status = await asyncio.shield(container.exited)
        finally:
            self.running.pop(record.name, None)
        record.terminated(status, container.started_ns)
        self.publish()
        return status

    def _start_error(self, record: ContainerRecord, config: ContainerConfig, message: str) -> ExitStatus:
        status = ExitStatus(
            code=128, signal=None, reason="StartError", finished_ns=time.time_ns(), message=message
        )
        # containerd made the container, and its empty log, before its task failed: a real status
        # names it, and `kubectl logs` of it prints nothing instead of an error.
        record.container_id = secrets.token_hex(32)
        log = LogFile(config.log_path)
        log.close()
        record.logs.append(log)
        record.terminated(status, 0)
        self.event("Failed", f"Error: {message}", "Warning")
        self.publish()
        return status

    def respec(self, pod: RawObject) -> None:
        """Take the new container specs; kill each running container whose image changed."""
        specs = {
            str(c.get("name")): c
            for group in ("initContainers", "containers")
            for c in pod["spec"].get(group) or []
        }
        self.pod["spec"] = pod["spec"]
        self.state.generation = int(pod["metadata"].get("generation", self.state.generation))
        grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
        for record in self.records():
            new = specs.get(record.name)
            if new is None or new.get("image") == record.spec.get("image"):
                continue
            record.spec = new
            container = self.running.get(record.name)
            if container is None:
                continue
            record.spec_changed = True
            self.event("Killing", f"Container {record.name} definition changed, will be restarted")
            self.kubelet.spawn(self._kill_one(container, grace))

    async def _kill_one(self, container: Container, grace: int) -> None:
        container.signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        if grace > 0:
            try:
                await asyncio.wait_for(asyncio.shield(container.exited), grace)
            except TimeoutError:
                container.signal(signal.SIGKILL)

    async def kill(self, grace: int, *, stop: bool) -> None:
        """SIGTERM every running container, SIGKILL after `grace` seconds; wait until all have exited."""
        if stop:
            self.stopping.set()
        containers = dict(self.running)
        for name, container in containers.items():
            if grace > 0:
                self.event("Killing", f"Stopping container {name}")
            container.signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        waits = [asyncio.shield(c.exited) for c in containers.values()]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=max(grace, 0))
            for container in containers.values():
                container.signal(signal.SIGKILL)
            if pending:
                await asyncio.wait(waits, timeout=30)

    async def stop(self, grace: int) -> None:
        await self.kill(grace, stop=True)
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), 30)
            except (TimeoutError, Exception):
                self.task.cancel()
        volumes.release_volumes(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


def _remove_leftovers(state_dir: Path) -> None:
    """A cluster started again on the same state directory runs none of the pods it had (the store
    lives in memory): their directories, whose secret volumes hold scripts and values in plain text,
    and the containers' own directories go before anything starts."""
    pods = state_dir / "pods"
    for entry in sorted(pods.iterdir()) if pods.is_dir() else ():
        volumes.release_volumes(entry)
        shutil.rmtree(entry, ignore_errors=True)
        log.warning("removed %s, left by a pod of an earlier run of this cluster", entry.name)
    containers = state_dir / "containers"
    for entry in sorted(containers.iterdir()) if containers.is_dir() else ():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _memory_limit(spec: RawObject) -> int | None:
    limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
    if limit is None:
        return None
    try:
        return sandbox.parse_quantity(str(limit))
    except ValueError:
        return None


class LocalKubelet:
    """contracts.Kubelet for this machine."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        state_dir: Path,
        node_name: str,
        cgroup_root: Path | None = DEFAULT_CGROUP_ROOT,
    ) -> None:
        self.store = store
        self.state_dir = state_dir
        self.node_name = node_name
        isolate = sandbox.isolation_available()
        if not isolate:
            log.warning(
                "not running as root: containers run as plain process groups, without PID or mount "
                "namespaces, memory limits or overlay file systems"
            )
        log.warning(
            "images are not pulled: containers run on this host's file system%s",
            " (through a copy-on-write overlay of /)" if isolate else "",
        )
        usable_cgroup = (
            cgroup_root if isolate and cgroup_root is not None and cgroup_root.parent.exists() else None
        )
        _remove_leftovers(state_dir)
        self.runtime = Runtime(state_dir=state_dir, cgroup_root=usable_cgroup, isolate=isolate)
        self._cgroup_root = usable_cgroup
        self.workers: dict[str, PodWorker] = {}
        self._deletions: set[asyncio.Task[None]] = set()

    async def pod_added(self, pod: RawObject) -> None:
        worker = PodWorker(self, pod)
        if worker.uid in self.workers:
            return
        self.workers[worker.uid] = worker
        worker.task = asyncio.ensure_future(self._guard(worker))

    async def _guard(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s: lifecycle failed", worker.namespace, worker.name)
            worker.state.failed = True
            worker.state.reason, worker.state.message = "NodeError", "the node failed to run this pod"
            worker.publish()

    async def pod_updated(self, pod: RawObject) -> None:
        worker = self.workers.get(pod["metadata"].get("uid", ""))
        if worker is not None and not worker.stopping.is_set():
            worker.respec(pod)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._deletions.add(task)
        task.add_done_callback(self._deletions.discard)

    async def pod_deleting(self, pod: RawObject, grace_seconds: int) -> None:
        worker = self.workers.get(pod["metadata"].get("uid", ""))
        if worker is None:
            if grace_seconds > 0:  # nothing runs here for it: the object can go at once
                meta = pod["metadata"]
                self.store.remove_pod(meta.get("namespace", "default"), meta["name"], meta.get("uid", ""))
            return
        task = asyncio.ensure_future(self._delete(worker, grace_seconds))
        self._deletions.add(task)
        task.add_done_callback(self._deletions.discard)

    async def _delete(self, worker: PodWorker, grace: int) -> None:
        try:
            await worker.stop(grace)
        finally:
            self.workers.pop(worker.uid, None)
            if grace > 0:
                self.store.remove_pod(worker.namespace, worker.name, worker.uid)

    def _worker(self, pod: RawObject) -> PodWorker:
        worker = self.workers.get(pod["metadata"].get("uid", ""))
        if worker is None:
            raise bad_request(f"pod {pod['metadata']['name']} does not have a host assigned")
        return worker

    async def handle_log(self, request: web.Request, pod: RawObject) -> web.StreamResponse:
        def lookup(container: str, back: int) -> logs.LogSource | None:
            worker = self.workers.get(pod["metadata"].get("uid", ""))
            record = next((r for r in worker.records() if r.name == container), None) if worker else None
            if record is None or len(record.logs) <= back:
                return None
            return record.logs[-1 - back]

        return await _guarded(logs.handle_log(request, pod, lookup))

    async def handle_attach(self, request: web.Request, pod: RawObject) -> web.StreamResponse:
        return await _guarded(self._stream(request, pod, exec_=False))

    async def handle_exec(self, request: web.Request, pod: RawObject) -> web.StreamResponse:
        return await _guarded(self._stream(request, pod, exec_=True))

    async def _stream(self, request: web.Request, pod: RawObject, *, exec_: bool) -> web.StreamResponse:
        streaming.require_upgrade(request)
        options = streaming.parse_stream_options(request, exec_=exec_)
        name = logs.select_container(pod, options.container)
        if not (pod.get("spec") or {}).get("nodeName"):
            raise bad_request(f"pod {pod['metadata']['name']} does not have a host assigned")
        worker = self._worker(pod)
        container = worker.running.get(name)
        not_running = f'container "{name}" in pod "{worker.name}" is not running'
        if exec_:
            return await streaming.serve_exec(request, options, self.runtime, container, not_running)
        spec = next((r.spec for r in worker.records() if r.name == name), {})
        return await streaming.serve_attach(
            request,
            options,
            container,
            not_running,
            accepts_stdin=bool(spec.get("stdin")),
            stdin_once=bool(spec.get("stdinOnce")),
            tty=bool(spec.get("tty")),
        )

    async def shutdown(self) -> None:
        workers = list(self.workers.values())
        await asyncio.gather(*(w.stop(0) for w in workers), return_exceptions=True)
        self.workers.clear()
        await self.runtime.shutdown()
        if self._cgroup_root is not None:
            with contextlib.suppress(OSError):
                self._cgroup_root.rmdir()


async def _guarded(handler: Any) -> web.StreamResponse:
    """A StatusError is the answer; anything else is logged and becomes a 500 Status, never a traceback."""
    try:
        response: web.StreamResponse = await handler
        return response
    except StatusError:
        raise
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception as exc:
        log.exception("kubelet handler failed")
        raise StatusError(500, "InternalError", f"Internal error occurred: {exc}") from exc
