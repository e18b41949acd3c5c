"""Cut one TCP connection the way a real network does: every packet of it dropped, both ways.

An expired NAT or conntrack entry, a vanished host, a pulled cable: neither end gets a FIN or RST,
and neither kernel ACKs anything any more. A userspace proxy cannot make that failure (its kernel
ACKs whatever it reads; that is `FaultProxy.silence_all`, a different failure), so this uses the
packet filter: two iptables rules matching the connection's four addresses, one per direction.
Both ends live on this machine, so every packet either way is delivered locally and passes INPUT
(a DROP in OUTPUT would be reported to the sender as EPERM, which a real path never does). Other
connections, new ones to the same server included, are untouched, as behind a NAT that lost one
entry. The suites run as root (the embedded cluster needs it); a missing iptables fails the test.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

Address = tuple[str, int]


@contextmanager
def dropped(client: Address, server: Address) -> Iterator[None]:
    """Every packet between `client` and `server` is dropped until the block ends."""
    tag = ["-m", "comment", "--comment", f"kuberunner-test-{os.getpid()}", "-j", "DROP"]
    rules = [_match(client, server) + tag, _match(server, client) + tag]
    added: list[list[str]] = []
    try:
        for rule in rules:
            _iptables("-I", rule)
            added.append(rule)
        yield
    finally:
        for rule in added:
            _iptables("-D", rule)


def _match(source: Address, destination: Address) -> list[str]:
    return [
        "INPUT", "-p", "tcp",
        "-s", source[0], "--sport", str(source[1]),
        "-d", destination[0], "--dport", str(destination[1]),
    ]  # fmt: skip


def _iptables(action: str, rule: list[str]) -> None:
    done = subprocess.run(["iptables", "-w", "10", action, *rule], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"iptables {action} {' '.join(rule)}: {done.stderr.strip()}")
