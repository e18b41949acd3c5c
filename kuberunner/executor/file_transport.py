"""The `file` log transport: the job's log file read from a byte offset by `tail` through pods/exec.

Bytes flow as `tail` reads them, so output without a newline shows at once, and after a drop the
next reader starts at exactly the byte after the last one received. The reader exits when its
exec stream's stdin closes, so a dropped connection leaves no `tail` behind in the container.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from kuberunner.executor.backoff import Backoff
from kuberunner.kube import channels, streams
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import ApiStatusError, ApiUnreachable, ExecStartError, Forbidden, StreamLost
from kuberunner.shell import commands

log = logging.getLogger(__name__)

LOG_WRITE_FAILED_NOTICE = "kuberunner-log-reader: the job log could not be written"
LOG_WRITE_FAILED_REASON = (
    "the job log could not be written (no space left on the pod's logs volume?); "
    "the stage's exit code is unknown"
)

# $1 log, $2 first byte, $3 the log status file (see `commands.start_stage`), made here before any
# stage runs, $4 the wake FIFO (`PodPaths.log_wake_fifo`). A watcher reads the status byte every
# second and says so on stderr once it is LOG_WRITE_FAILED.
#
# The follower must send a stage's output and marker as they are written: the runner waits for that
# marker before it starts the next stage. GNU tail follows by inotify (and, when the node's inotify
# instances are used up, polls every `-s` seconds). busybox tail (alpine, busybox images) only polls,
# once a second at best (its `-s` takes whole seconds), which made every stage last a second. So
# where `tail -s 0.1` is refused, the reader copies the log itself: `cat` from one open descriptor
# (`tail -c +N` placed it; every copy goes on where the last one ended), then waits on the wake FIFO
# with `read -t`, which the stage lines poke at a stage's start and after its marker. While the log
# grows or after a poke it looks again within 20 ms, else every 0.25 s (one `cat` per look). A shell
# without `read -t` (dash, found with GNU tail) or a missing `mkfifo` leaves plain `tail -f`.
_READER = f"""\
: >>"$1"; [ -s "$3" ] || printf {commands.LOG_STATUS_UNSET} >>"$3"
(c=; until [ "$c" = {commands.LOG_WRITE_FAILED} ]; do sleep 1; read -r c <"$3"; done
 echo '{LOG_WRITE_FAILED_NOTICE}' >&2) & w=$!
if tail -s 0.1 -c +1 /dev/null >/dev/null 2>&1; then
  tail -s 0.1 -c +"$2" -f "$1" & t=$!
elif {{ [ -p "$4" ] || mkfifo -m 666 "$4"; }} 2>/dev/null && exec 4<>"$4" &&
  {{ read -t 0.01 _ <&4; [ $? != 2 ]; }} 2>/dev/null; then
  exec 3<"$1"
  (tail -c +"$2" <&3 || exit; n=0; seen=
   while cat <&3; do
     read -r _ at </proc/$$/fdinfo/3 2>/dev/null
     if [ "$at" != "$seen" ]; then seen=$at; n=25; fi
     if [ $n -gt 0 ]; then n=$((n - 1)); s=0.02; else s=0.25; fi
     read -t $s _ <&4 && n=25
   done) & t=$!
else
  tail -c +"$2" -f "$1" & t=$!
fi
cat >/dev/null; kill "$t" "$w"
"""


class TransportError(Exception):
    """The transport cannot go on (forbidden, missing tools, API gone past the budget)."""


def reader_command(path: str, offset: int, status_path: str, wake_fifo: str) -> list[str]:
    """`tail -c +N` counts from 1, so offset 0 is +1."""
    return ["sh", "-c", _READER, "kuberunner-log-reader", path, str(offset + 1), status_path, wake_fifo]


class FileLogReader:
    def __init__(
        self,
        *,
        client: KubeClient,
        namespace: str,
        pod: str,
        container: str,
        path: str,
        status_path: str,
        wake_fifo: str,
        offset: int = 0,
        backoff: Backoff | None = None,
        on_reconnect: Callable[[], None] = lambda: None,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._pod = pod
        self._container = container
        self._path = path
        self._status_path = status_path
        self._wake_fifo = wake_fifo
        self.offset = offset
        self._backoff = backoff or Backoff()
        self.reconnects = 0
        self.connected = asyncio.Event()
        """Set once an exec session of the reader was accepted: the cluster allows pods/exec."""
        self._on_reconnect = on_reconnect

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
                    raise TransportError(f"pod {self._namespace}/{self._pod} was deleted") from exc
                reason = exc.message
            delay = self._backoff.failed(loop.time())
            if delay is None:
                raise TransportError(f"the Kubernetes API stayed unreachable: {reason}")
            log.info("log stream of %s dropped (%s); resuming at byte %d", self._pod, reason, self.offset)
            self.reconnects += 1
            self._on_reconnect()
            await asyncio.sleep(delay)

    async def _one_stream(self) -> AsyncIterator[bytes]:
        session = await streams.open_exec(
            self._client,
            namespace=self._namespace,
            pod=self._pod,
            container=self._container,
            command=reader_command(self._path, self.offset, self._status_path, self._wake_fifo),
            stdin=True,
        )
        self.connected.set()
        errors = b""
        async with session:
            async for frame in session.output():
                if frame.channel == channels.STDOUT and frame.data:
                    self.offset += len(frame.data)
                    yield frame.data
                elif frame.channel == channels.STDERR and frame.data:
                    errors = (errors + frame.data)[-4096:]
                    if LOG_WRITE_FAILED_NOTICE.encode() in errors:
                        raise TransportError(LOG_WRITE_FAILED_REASON)
                    log.warning("log reader: %s", frame.data.decode(errors="replace").rstrip())
            await session.wait()
