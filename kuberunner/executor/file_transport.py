"""The `file` log transport: the job's log file read from a byte offset by `tail` through pods/exec.

Bytes flow as `tail` reads them, so output without a newline shows at once, and after a drop the
next reader starts at exactly the byte after the last one received. The reader exits when its
exec stream's stdin closes, so a dropped connection leaves no `tail` behind in the container.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from kuberunner.executor.backoff import Backoff
from kuberunner.kube import channels, streams
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import ApiStatusError, ApiUnreachable, ExecStartError, Forbidden, StreamLost

log = logging.getLogger(__name__)

_READER = ': >>"$1"; tail -c +"$2" -f "$1" & t=$!; cat >/dev/null; kill "$t"'


class TransportError(Exception):
    """The transport cannot go on (forbidden, missing tools, API gone past the budget)."""


def reader_command(path: str, offset: int) -> list[str]:
    """`tail -c +N` counts from 1, so offset 0 is +1."""
    return ["sh", "-c", _READER, "kuberunner-log-reader", path, str(offset + 1)]


class FileLogReader:
    def __init__(
        self,
        *,
        client: KubeClient,
        namespace: str,
        pod: str,
        container: str,
        path: str,
        offset: int = 0,
        backoff: Backoff | None = None,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._pod = pod
        self._container = container
        self._path = path
        self.offset = offset
        self._backoff = backoff or Backoff()
        self.reconnects = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        """Log bytes in order, each exactly once, across any number of reconnects."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                async for data in self._one_stream():
                    self._backoff.healthy()
                    yield data
                reason = "the log reader ended"
            except (ApiUnreachable, StreamLost) as exc:
                reason = str(exc)
            except Forbidden as exc:
                raise TransportError(
                    f"reading the job log needs pods/exec, which the cluster forbids ({exc.message}); "
                    'set log_transport = "kubelet" in [runners.kubernetes]'
                ) from exc
            except ExecStartError as exc:
                raise TransportError(f"cannot start the log reader in the build container: {exc}") from exc
            except ApiStatusError as exc:
                if exc.code == 404:
                    raise TransportError(f"pod {self._pod} is gone") from exc
                reason = exc.message
            delay = self._backoff.failed(loop.time())
            if delay is None:
                raise TransportError(f"the Kubernetes API stayed unreachable: {reason}")
            log.info("log stream of %s dropped (%s); resuming at byte %d", self._pod, reason, self.offset)
            self.reconnects += 1
            await asyncio.sleep(delay)

    async def _one_stream(self) -> AsyncIterator[bytes]:
        session = await streams.open_exec(
            self._client,
            namespace=self._namespace,
            pod=self._pod,
            container=self._container,
            command=reader_command(self._path, self.offset),
            stdin=True,
        )
        async with session:
            async for frame in session.output():
                if frame.channel == channels.STDOUT and frame.data:
                    self.offset += len(frame.data)
                    yield frame.data
                elif frame.channel == channels.STDERR and frame.data:
                    log.warning("log reader: %s", frame.data.decode(errors="replace").rstrip())
            await session.wait()
