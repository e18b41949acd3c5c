"""Start and stop the embedded cluster: store, kubelet, TLS, HTTP server, kubeconfig.

`EmbeddedCluster` is what tests and `kuberunner exec` use in-process; `run_cluster_forever` is the
foreground `kuberunner cluster` command. Loopback only: the server refuses any other listen address,
because its containers run as the user who started it. Connections are admitted by
`connections.ConnectionGate`, which also does TLS: a deadline for each request head and a cap on
connections that have not shown the token yet.

State directory layout: `<state_dir>/apiserver/` belongs to this module (kubeconfig unless another
path was asked for, transient TLS files); everything else in `<state_dir>` belongs to the kubelet.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from types import TracebackType

from aiohttp import web

from kuberunner.cluster import kubeconfig, tls
from kuberunner.cluster.api import apiserver, connections
from kuberunner.cluster.api.state import ApiState
from kuberunner.cluster.api.store import Store
from kuberunner.cluster.contracts import Kubelet, ObjectStore
from kuberunner.cluster.node import hidden

log = logging.getLogger(__name__)

NODE_NAME = "kuberunner-node"
KubeletFactory = Callable[[ObjectStore, Path], Kubelet]


def default_kubelet(store: ObjectStore, state_dir: Path) -> Kubelet:
    # Imported here so the API server imports (and is tested) without the kubelet half.
    from kuberunner.cluster.node.kubelet import LocalKubelet  # type: ignore[import-not-found,unused-ignore]

    kubelet: Kubelet = LocalKubelet(store=store, state_dir=state_dir, node_name=NODE_NAME)
    return kubelet


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[::1]:PORT`); the host must be a loopback address."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the embedded cluster listens on loopback only, not {host!r}")
    return host, int(port_text)


class EmbeddedCluster:
    """`async with EmbeddedCluster() as cluster:` a running single-node cluster at `cluster.url`."""

    def __init__(
        self,
        *,
        listen: str = "127.0.0.1:0",
        state_dir: Path | None = None,
        kubeconfig_out: Path | None = None,
        forbid: Collection[str] = (),
        kubelet_factory: KubeletFactory | None = None,
        limits: connections.ConnectionLimits | None = None,
    ) -> None:
        self._host, self._requested_port = parse_listen(listen)
        self.limits = limits or connections.ConnectionLimits()
        self.gate: connections.ConnectionGate | None = None
        self._given_state_dir = state_dir
        self._kubeconfig_out = kubeconfig_out
        self._forbid = (forbid,) if isinstance(forbid, str) else tuple(forbid)
        self._kubelet_factory = kubelet_factory or default_kubelet
        self._runner: web.AppRunner | None = None
        self._kubelet: Kubelet | None = None
        self._created_state_dir = False
        self.url = ""
        self.port = 0
        self.token = ""
        self.ca_pem = b""
        self.kubeconfig_path = Path()
        self.store = Store(node_name=NODE_NAME)
        self.state_dir = Path()

    async def __aenter__(self) -> EmbeddedCluster:
        try:
            await self._start()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def _start(self) -> None:
        if self._given_state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="kuberunner-cluster-"))
            self._created_state_dir = True
        else:
            self.state_dir = self._given_state_dir
            self.state_dir.mkdir(parents=True, exist_ok=True)
        own_dir = self.state_dir / "apiserver"
        creds = tls.generate(hosts=(self._host,))
        self.token = creds.token
        self.ca_pem = creds.cert_pem
        self.store.set_root_ca(creds.cert_pem.decode("ascii"))
        context = tls.server_context(creds, own_dir)
        self._kubelet = self._kubelet_factory(self.store, self.state_dir)
        self.store.kubelet = self._kubelet
        state = ApiState(store=self.store, kubelet=self._kubelet, token=self.token, forbid=self._forbid)
        app = apiserver.make_app(state)
        self._runner = web.AppRunner(
            app, handle_signals=False, shutdown_timeout=2.0, keepalive_timeout=self.limits.idle_timeout
        )
        await self._runner.setup()
        assert self._runner.server is not None
        self.gate = connections.ConnectionGate(
            limits=self.limits, ssl_context=context, app_factory=self._runner.server
        )
        site = connections.GatedSite(self._runner, host=self._host, port=self._requested_port, gate=self.gate)
        await site.start()
        self.port = _bound_port(self._runner)
        host = f"[{self._host}]" if ":" in self._host else self._host
        state.server_address = f"{host}:{self.port}"
        self.url = f"https://{host}:{self.port}"
        self.kubeconfig_path = self._kubeconfig_out or own_dir / "kubeconfig"
        kubeconfig.write(self.kubeconfig_path, server=self.url, ca_pem=self.ca_pem, token=self.token)
        hidden.hide_from_containers(self.kubeconfig_path)
        log.info("embedded cluster serving at %s (kubeconfig %s)", self.url, self.kubeconfig_path)

    async def _stop(self) -> None:
        self.store.close()
        if self._kubelet is not None:
            try:
                await self._kubelet.shutdown()
            except Exception:
                log.exception("kubelet shutdown failed")
            self._kubelet = None
        if self._runner is not None:
            server = self._runner.server
            transports = [h.transport for h in server.connections] if server is not None else []
            await self._runner.cleanup()
            # A TLS close waits for the peer's close_notify, which an idle keep-alive client never
            # sends; abort so no socket outlives the server.
            for transport in transports:
                if transport is not None:
                    transport.abort()
            self._runner = None
        if self.kubeconfig_path != Path():
            self.kubeconfig_path.unlink(missing_ok=True)
        if self.state_dir != Path():
            shutil.rmtree(self.state_dir / "apiserver", ignore_errors=True)
            if self._created_state_dir:
                shutil.rmtree(self.state_dir, ignore_errors=True)


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the API server did not bind a TCP port")


async def _serve_until_signalled(cluster: EmbeddedCluster, out: Callable[[str], None]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with cluster:
            out(f"kuberunner cluster: serving the Kubernetes API at {cluster.url}")
            out(f"kubeconfig: {cluster.kubeconfig_path}")
            out(f"  kubectl --kubeconfig {cluster.kubeconfig_path} get pods")
            out(f"  kuberunner exec --kubeconfig {cluster.kubeconfig_path} ...")
            out("Press Ctrl-C to stop: every container is stopped and the kubeconfig removed.")
            await stop.wait()
            out("kuberunner cluster: stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_cluster_forever(
    *,
    listen: str = "127.0.0.1:0",
    kubeconfig_out: Path | None = None,
    state_dir: Path | None = None,
    forbid: Collection[str] = (),
) -> int:
    """Blocking: serve until SIGINT/SIGTERM, then clean up. Returns the process exit code."""

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        cluster = EmbeddedCluster(
            listen=listen, state_dir=state_dir, kubeconfig_out=kubeconfig_out, forbid=forbid
        )
    except ValueError as exc:
        print(f"kuberunner cluster: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve_until_signalled(cluster, out))
    except OSError as exc:
        print(f"kuberunner cluster: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
