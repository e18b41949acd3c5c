"""What the kubelet transport's record parsing alone costs, without a cluster: CPU seconds per GiB.

A `pods/log?timestamps=true` body is synthesised: 80-byte lines, or an unbroken stream cut into
16 KiB partial records, each with a 30-character timestamp. It is fed in 64 KiB pieces through
the runner's own code: `RecordParser.feed`, then `ResumePoint.admit` for each record, as
`kubelet_transport` does. Two baselines get the same body: only copying it (the floor), and one
C-level regex substitution that strips the timestamps (about the best a pure-Python parser can do).

    .venv/bin/python bench/kubelet_parse.py [--size 64M]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ratio, table, write_json

from kuberunner.executor.kubelet_records import CONTAINERD_RECORD_LIMIT, RecordParser, ResumePoint

GIB = 2**30
PIECE = 65536
_RECORD = re.compile(rb"[^ \n]{1,40} ([^\n]{0,16384}\n|[^\n]{16384})")


def body(shape: str, size: int) -> bytes:
    """`size` bytes of job output as the kubelet serves it, timestamps included."""
    if shape == "lines":
        record, data = b"x" * 79 + b"\n", 80
    else:
        record, data = b"x" * CONTAINERD_RECORD_LIMIT, CONTAINERD_RECORD_LIMIT
    stamps = (b"2026-11-27T19:27:%02d.%09dZ " % (n // 10**9 % 60, n % 10**9) for n in range(size // data))
    return b"".join(stamp + record for stamp in stamps)


def runner_parse(whole: bytes) -> int:
    parser, resume, out = RecordParser(), ResumePoint(), 0
    for at in range(0, len(whole), PIECE):
        out += len(b"".join(r.data for r in parser.feed(whole[at : at + PIECE]) if resume.admit(r)))
    return out + sum(len(r.data) for r in parser.flush())


def copy_only(whole: bytes) -> int:
    return sum(len(bytes(whole[at : at + PIECE])) for at in range(0, len(whole), PIECE))


def regex_strip(whole: bytes) -> int:
    out, pending = 0, b""
    for at in range(0, len(whole), PIECE):
        buffer = pending + whole[at : at + PIECE]
        cut = buffer.rfind(b"\n") + 1 or len(buffer) - len(buffer) % (CONTAINERD_RECORD_LIMIT + 31)
        out += len(_RECORD.sub(rb"\1", buffer[:cut]))
        pending = buffer[cut:]
    return out + len(_RECORD.sub(rb"\1", pending))


def cpu_per_gib(fn: Callable[[bytes], int], whole: bytes, job_bytes: int) -> tuple[float, int]:
    """CPU seconds per GiB of job output (timestamps not counted), and how many bytes `fn` made."""
    start = time.process_time()
    produced = fn(whole)
    return (time.process_time() - start) / (job_bytes / GIB), produced


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=64 * 2**20, help="bytes of job output (default 64 MiB)")
    args = parser.parse_args()
    found: dict[str, dict[str, float]] = {}
    rows: list[list[object]] = []
    for shape in ("lines", "stream"):
        whole = body(shape, args.size)
        job_bytes = len(whole) - whole.count(b"Z ") * 31
        found[shape] = {}
        for label, fn in (("copy only (floor)", copy_only), ("one regex.sub", regex_strip),
                          ("runner: RecordParser + admit", runner_parse)):
            seconds, produced = cpu_per_gib(fn, whole, job_bytes)
            found[shape][label] = seconds
            rows.append([shape, label, f"{seconds:.2f}", ratio(seconds, found[shape]["copy only (floor)"]),
                         f"{produced / 2**20:.0f}"])
    print(f"CPU s per GiB of job output, {args.size / 2**20:.0f} MiB per shape, {PIECE // 1024} KiB pieces")
    print(table(["shape", "parser", "CPU s/GiB", "vs copy", "MiB out"], rows))
    print(f"results: {write_json('kubelet_parse', {'size': args.size, 'cpu_s_per_gib': found})}")


if __name__ == "__main__":
    main()
