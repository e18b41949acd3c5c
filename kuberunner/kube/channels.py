"""The channel framing of Kubernetes remote-command WebSockets (v4/v5.channel.k8s.io), free of I/O.

Each WebSocket message is one byte of channel number followed by the payload. The server sends
stdout (1), stderr (2) and a JSON `Status` on the error channel (3) before closing; v5 adds the
client's CLOSE signal `[255, channel]`. `streams.py` moves the bytes; everything about what they
mean lives here so it can be tested with canned messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"


def encode(channel: int, data: bytes) -> bytes:
    if not 0 <= channel <= 255:
        raise ValueError(f"channel out of range: {channel}")
    return bytes((channel,)) + data


def close_signal(channel: int) -> bytes:
    """The v5 message that ends one input channel (stdin EOF for channel 0)."""
    return encode(CLOSE, bytes((channel,)))


@dataclass(frozen=True, slots=True)
class Frame:
    channel: int
    data: bytes


def decode(message: bytes) -> Frame:
    if not message:
        raise ValueError("empty channel message (no channel byte)")
    return Frame(message[0], bytes(message[1:]))


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """What channel 3 said: an exit code (0 = Success), or an error that is not an exit code."""

    exit_code: int | None
    error: str | None


def parse_status(payload: bytes) -> ExitStatus:
    """Read a channel-3 `metav1.Status`.

    The exit code is taken from the cause whose reason is `ExitCode`, wherever it sits among the
    causes; any other Failure is an error, not an exit code.
    """
    try:
        doc: Any = json.loads(payload)
    except ValueError:
        text = payload.decode("utf-8", errors="replace").strip()
        return ExitStatus(None, f"unreadable status on the error channel: {text[:200]!r}")
    if not isinstance(doc, dict):
        return ExitStatus(None, f"unexpected status on the error channel: {str(doc)[:200]!r}")
    if doc.get("status") == "Success":
        return ExitStatus(0, None)
    message = str(doc.get("message") or doc.get("reason") or "unknown failure")
    if doc.get("reason") == "NonZeroExitCode":
        details = doc.get("details")
        causes = details.get("causes") if isinstance(details, dict) else None
        for cause in causes if isinstance(causes, list) else []:
            if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
                try:
                    return ExitStatus(int(str(cause.get("message", "")).strip()), None)
                except ValueError:
                    break
    return ExitStatus(None, message)


class StatusCollector:
    """Gathers channel-3 bytes until the session ends (the Status may span messages), bounded.

    An empty channel-3 message is the server's "stream open" marker and adds nothing; a session
    that closes cleanly with nothing on channel 3 succeeded (as client-go reads it).
    """

    def __init__(self, *, max_status: int = 65536) -> None:
        self._max = max_status
        self._buf = bytearray()
        self.truncated = False

    def feed(self, data: bytes) -> None:
        room = self._max - len(self._buf)
        if len(data) > room:
            self.truncated = True
        self._buf += data[: max(room, 0)]

    @property
    def payload(self) -> bytes:
        return bytes(self._buf)

    @property
    def received(self) -> bool:
        return bool(self._buf)

    def result(self) -> ExitStatus:
        if not self._buf:
            return ExitStatus(0, None)
        return parse_status(bytes(self._buf))
