"""What masking costs, without a cluster: MB/s and peak RSS of `Trace.job_output` with masked values.

Each case feeds the same amount of job output, in 64 KiB chunks (`--chunk`; the log readers deliver
up to that much at a time),
through a `Trace` with a counting sink; the baseline is the same `Trace` with no masked value, run
in the same process. Cases:

- (a) no masking: the baseline;
- (b) one 40-character token, in 80-byte lines that hold it now and then, and its prefixes;
- (c) 100 tokens of 4 KiB, adversarial output: long prefixes of the values (near misses) back to
  back, the values themselves now and then, all cut at chunk boundaries wherever they fall;
- (d) one 30 KB and one 60 KB token, in the same kind of adversarial output.

MB/s counts the feeding only; "setup ms" is building the `Trace` (its masker), once per job. Peak RSS
is the process's VmHWM after resetting it (`/proc/self/clear_refs`) for each case; "added" is that
peak minus the RSS when the case starts (the output is generated before). Each case runs
`--repeats` times and the fastest run is shown (the machine may be shared). With `--old`,
the masking of the commit named by `--old-rev` (loaded from `git show`) runs the same cases on
`--old-size` bytes (it is too slow for more), for comparison.

    .venv/bin/python bench/masking.py [--size 32M] [--chunk 64K] [--repeats 3]
                                      [--old] [--old-rev HEAD] [--old-size 2M]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, NullSink, proc_sample, ratio, reset_peak_rss, table, write_json

from kuberunner.trace import Trace

CHUNK = 65536
_ALPHABET = (string.ascii_letters + string.digits).encode()


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    values: list[str]
    output: bytes


def token(rng: random.Random, size: int) -> str:
    return bytes(rng.choices(_ALPHABET, k=size)).decode()


def adversarial(rng: random.Random, values: Sequence[str], size: int) -> bytes:
    """Near misses of the values back to back: long prefixes, short ones, now and then a whole value."""
    encoded = [v.encode() for v in values]
    parts: list[bytes] = []
    total = 0
    while total < size:
        value = rng.choice(encoded)
        roll = rng.random()
        if roll < 0.05:
            part = value
        elif roll < 0.15:
            part = value[: rng.randint(1, 32)]
        else:
            part = value[: rng.randint(len(value) // 2, len(value) - 1)]
        parts.append(part)
        total += len(part)
    return b"".join(parts)[:size]


def lines_with(rng: random.Random, secret: str, size: int) -> bytes:
    filler = bytes(rng.choices(_ALPHABET, k=4096))
    parts: list[bytes] = []
    total = 0
    while total < size:
        start = rng.randint(0, 4000)
        line = filler[start : start + 40] + b" "
        if rng.random() < 0.01:
            line += secret.encode()
        elif rng.random() < 0.05:
            line += secret.encode()[: rng.randint(1, len(secret) - 1)]
        line = line[:79].ljust(79, b".") + b"\n"
        parts.append(line)
        total += len(line)
    return b"".join(parts)[:size]


def cases(size: int) -> Iterator[Case]:
    """Each case's output is made when its turn comes, so that only one is in memory."""
    rng = random.Random(20261128)
    many = [token(rng, 4096) for _ in range(100)]
    big = [token(rng, 30_000), token(rng, 60_000)]
    one = token(rng, 40)
    yield Case("(a) no masking", [], adversarial(rng, many, size))
    yield Case("(b) 1 value, 40 B", [one], lines_with(rng, one, size))
    yield Case("(c) 100 values x 4 KiB, adversarial", many, adversarial(rng, many, size))
    yield Case("(d) 30 KB + 60 KB values, adversarial", big, adversarial(rng, big, size))


def measure(make_trace: Callable[[list[str]], Any], case: Case, chunk: int, repeats: int) -> dict[str, float]:
    """The fastest of `repeats` runs (the machine is shared: it is the least disturbed one), with the
    highest memory figures of any run (a later run may reuse what an earlier one grew)."""
    chunks = [case.output[i : i + chunk] for i in range(0, len(case.output), chunk)]
    best: dict[str, float] = {}
    for _ in range(repeats):
        before = proc_sample()
        reset_peak_rss()
        started = time.perf_counter()
        trace = make_trace(case.values)
        setup = time.perf_counter() - started
        sink = NullSink()
        trace.add_sink(sink)
        for piece in chunks:
            trace.job_output(piece)
        trace.close()
        seconds = time.perf_counter() - started - setup
        after = proc_sample()
        memory = {
            "peak_rss_mb": max(best.get("peak_rss_mb", 0.0), after.hwm_kb / 1024),
            "added_mb": max(best.get("added_mb", 0.0), (after.hwm_kb - before.rss_kb) / 1024),
        }
        if not best or seconds < best["seconds"]:
            best = {
                "mb_per_s": len(case.output) / seconds / 1e6,
                "seconds": seconds,
                "setup_ms": setup * 1000,
                "bytes_out": sink.bytes,
            }
        best.update(memory)
        del trace
    return best


def load_old(rev: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:kuberunner/trace.py"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_trace.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("old_trace", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def leaked(case: Case, make_trace: Callable[[list[str]], Any]) -> bool:
    """Whether any value shows in the output (checked on a separate, small run)."""

    class Keep:
        def __init__(self) -> None:
            self.parts: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.parts.append(data)

        def close(self) -> None:
            pass

    trace, keep = make_trace(case.values), Keep()
    trace.add_sink(keep)
    sample = case.output[: 4 * CHUNK]
    for start in range(0, len(sample), 4093):  # odd-sized chunks: values split everywhere
        trace.job_output(sample[start : start + 4093])
    trace.close()
    shown = b"".join(keep.parts)
    return any(v.encode() in shown for v in case.values)


def parse_size(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=parse_size, default=parse_size("32M"))
    parser.add_argument("--old", action="store_true", help="also run the masking of --old-rev")
    parser.add_argument("--old-rev", default="HEAD")
    parser.add_argument("--old-size", type=parse_size, default=parse_size("2M"))
    parser.add_argument("--chunk", type=parse_size, default=CHUNK, help="bytes per job_output call")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; the fastest is shown")
    options = parser.parse_args(argv)

    def new(values: list[str]) -> Trace:
        return Trace(masked=values)

    variants: list[tuple[str, Callable[[list[str]], Any], int]] = [("this tree", new, options.size)]
    if options.old:
        old = load_old(options.old_rev)
        variants.append(
            (f"{options.old_rev} (old)", lambda values: old.Trace(masked=values), options.old_size)
        )
    rows: list[list[object]] = []
    results: list[dict[str, Any]] = []
    for label, make_trace, size in variants:
        baseline = 0.0
        for case in cases(size):
            figures = measure(make_trace, case, options.chunk, options.repeats)
            baseline = baseline or figures["mb_per_s"]
            leak = leaked(case, make_trace)
            rows.append(
                [
                    label,
                    case.name,
                    f"{size / 2**20:.0f} MiB",
                    f"{figures['mb_per_s']:.1f}",
                    ratio(figures["mb_per_s"], baseline),
                    f"{figures['setup_ms']:.1f}",
                    f"{figures['peak_rss_mb']:.0f}",
                    f"{figures['added_mb']:.1f}",
                    "LEAK" if leak else "none",
                ]
            )
            results.append({"variant": label, "case": case.name, "size": size, "leak": leak, **figures})
            print(rows[-1], file=sys.stderr, flush=True)
    print(
        table(
            [
                "code",
                "case",
                "output",
                "MB/s",
                "vs (a)",
                "setup ms",
                "peak RSS MB",
                "added MB",
                "values shown",
            ],
            rows,
        )
    )
    print(f"results: {write_json('masking', {'results': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
