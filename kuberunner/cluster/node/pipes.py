"""Non-blocking pipe fds driven by the event loop, without transports or helper threads.

The runtime holds hundreds of pipe ends (three or four per container); plain fds plus one-shot
reader/writer callbacks keep that cheap. `reap` waits for a child through a pidfd, so no child
watcher thread is needed per container.
"""

from __future__ import annotations

import asyncio
import contextlib
import os


def make_pipe() -> tuple[int, int]:
    """A (read, write) pair, both close-on-exec; the caller decides which end goes to a child."""
    return os.pipe()


async def _ready(fd: int, *, write: bool) -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    if write:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await future
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def read_some(fd: int, max_bytes: int = 65536) -> bytes:
    """Whatever the pipe holds now (up to `max_bytes`), waiting for at least one byte; b"" at EOF."""
    os.set_blocking(fd, False)
    while True:
        try:
            return os.read(fd, max_bytes)
        except BlockingIOError:
            await _ready(fd, write=False)


async def write_all(fd: int, data: bytes) -> None:
    """Write every byte, waiting while the pipe is full; raises BrokenPipeError when the reader is gone."""
    os.set_blocking(fd, False)
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            await _ready(fd, write=True)
            continue
        view = view[written:]


def close_quietly(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


async def reap(pid: int) -> int:
    """Wait for our child `pid` to exit and collect it; returns the wait status."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = -1
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG never blocks
            if done == pid:
                return status
            if pidfd >= 0:
                await _ready(pidfd, write=False)
            else:
                await asyncio.sleep(0.05)
    except ChildProcessError:
        return 0
    finally:
        close_quietly(pidfd if pidfd >= 0 else None)
