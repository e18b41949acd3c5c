"""Where the job log goes: the terminal, a trace file (GitLab's uploader is a sink of `gitlab`'s).

A sink that cannot take more bytes raises `SinkError`, whose text names the sink and the error; the
`Trace` then stops writing to it and reports the failure, and the executor ends the job as a system
failure. A sink never decides on its own that losing output is fine.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Protocol

from kuberunner.errors import BadInput


class SinkError(Exception):
    """A sink cannot take more bytes; the text names the sink and the error."""


class Sink(Protocol):
    """Where trace bytes go; `write` gets every byte once, in order."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class StreamSink:
    """A binary stream such as `sys.stdout.buffer`, flushed on every write so output is live."""

    def __init__(self, stream: BinaryIO, *, name: str = "stdout", close_stream: bool = False) -> None:
        self._stream = stream
        self._name = name
        self._close_stream = close_stream

    def write(self, data: bytes) -> None:
        try:
            self._stream.write(data)
            self._stream.flush()
        except OSError as exc:
            self._abandon(exc)
            raise SinkError(f"{self._name}: {_describe(exc)}") from exc

    def close(self) -> None:
        try:
            if self._close_stream:
                self._stream.close()
            else:
                self._stream.flush()
        except OSError as exc:
            self._abandon(exc)
            raise SinkError(f"{self._name}: {_describe(exc)}") from exc

    def _abandon(self, exc: OSError) -> None:
        if not isinstance(exc, BrokenPipeError):
            return
        # Nobody reads any more (`kuberunner exec | head`): point the descriptor at /dev/null, so the
        # bytes still buffered in the stream go nowhere instead of failing again at interpreter exit.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)


class FileSink:
    """A trace file, created or truncated; flushed on every write so it can be followed live."""

    def __init__(self, path: Path) -> None:
        """BadInput if the file cannot be created: the path came from the user (`--trace-file`)."""
        self._name = f"trace file {path}"
        try:
            self._file = path.open("wb")
        except OSError as exc:
            raise BadInput(f"{path}: cannot write the trace file: {exc.strerror or exc}") from exc

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            raise SinkError(f"{self._name}: {_describe(exc)}") from exc

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:
            raise SinkError(f"{self._name}: {_describe(exc)}") from exc


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
