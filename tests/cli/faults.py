"""A FaultProxy in front of the session's cluster, driven from synchronous tests through its own loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

from ruamel.yaml import YAML

from kuberunner.faultproxy import FaultProxy, rewrite_kubeconfig

T = TypeVar("T")


def server_port(kubeconfig: Path) -> int:
    config = YAML(typ="safe").load(kubeconfig.read_text())
    server: str = config["clusters"][0]["cluster"]["server"]
    return int(server.rsplit(":", 1)[1].rstrip("/"))


class ProxyThread:
    """Runs the proxy's event loop in a thread; `call` runs a proxy method there and returns its result."""

    def __init__(self, kubeconfig: Path, out: Path) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self.proxy = FaultProxy(target_host="127.0.0.1", target_port=server_port(kubeconfig))
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(timeout=10)
        self.kubeconfig = out
        rewrite_kubeconfig(kubeconfig, out, server=self.proxy.address)

    def call(self, fn: Callable[[], T]) -> T:
        result: Future[T] = Future()

        def run() -> None:
            try:
                result.set_result(fn())
            except BaseException as exc:  # handed back to the calling thread
                result.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return result.result(timeout=10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
