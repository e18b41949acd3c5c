"""Read back the TCP keepalive options of a client socket in this very process, found by its address.

A test server sees the client's end of a connection as the request's peer address; when the client
runs in the same process, the socket with that local address is one of this process's own file
descriptors. Reading its options from the kernel shows what the code under test really set on the
connection it used, whichever session, pool or factory made it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeepaliveOptions:
    keepalive: int
    idle: int
    interval: int
    count: int
    user_timeout_ms: int


def options_of_own_socket(local: tuple[str, int]) -> KeepaliveOptions:
    """The options of this process's TCP socket whose local address is `local`."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(fd)))
        except OSError:
            continue  # closed meanwhile, or not a socket Python can wrap
        with sock:
            try:
                if sock.type != socket.SOCK_STREAM or sock.getsockname()[:2] != local:
                    continue
            except OSError:
                continue
            return KeepaliveOptions(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
            )
    raise AssertionError(f"no TCP socket of this process has the local address {local}")
