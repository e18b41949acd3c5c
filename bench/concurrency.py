"""Concurrency: N jobs at once in this one runner process, over one KubeClient.

Each job prints a numbered line every 100 ms for `--seconds` (20 by default). For N in 10, 50, 200
the jobs run through `run_job` under one `asyncio.gather`; a sampler thread reads this process's
RSS and the cluster process's RSS (and its containers') from /proc. Correctness: every job's
output holds each of its lines exactly once, in order. Baselines in the same run: the runner's
RSS before any job (idle, client open), and the same N scripts run by `sh` directly (their CPU).
Goal at 200 jobs: runner RSS <= 250 MB, every line exactly once.

    .venv/bin/python bench/concurrency.py [--jobs 10 --jobs 50 --jobs 200] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    ClusterProcess,
    job_request,
    open_client,
    proc_sample,
    ratio,
    reset_peak_rss,
    set_tls_read_buffer,
    table,
    tree_rss_kb,
    write_json,
)

from kuberunner.executor.job import run_job
from kuberunner.executor.results import JobResult, Success
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.kube.client import KubeClient
from kuberunner.trace import Trace

_LINE = re.compile(rb"^job-line (\d+)$", re.MULTILINE)
MAX_KEPT = 1 << 20


def script(lines: int) -> str:
    return f'i=1; while [ "$i" -le {lines} ]; do echo "job-line $i"; i=$((i + 1)); sleep 0.1; done'


class KeepSink:
    """Keeps a job's trace (a few kB here), bounded all the same."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data[: max(0, MAX_KEPT - len(self.data))]

    def close(self) -> None:
        pass


def lines_ok(trace: bytes, lines: int) -> bool:
    return [int(n) for n in _LINE.findall(trace)] == list(range(1, lines + 1))


def open_sockets() -> int:
    """This process's open sockets: each TLS connection costs asyncio a 256 KiB read buffer."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


class Sampler:
    """Peak RSS of this process, of the cluster process and of the cluster's containers."""

    def __init__(self, cluster_pid: int) -> None:
        self._cluster = cluster_pid
        self._stop = threading.Event()
        self.runner_kb = self.cluster_kb = self.containers_kb = self.sockets = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rounds = 0
        while not self._stop.wait(0.25):
            self.runner_kb = max(self.runner_kb, proc_sample().rss_kb)
            self.cluster_kb = max(self.cluster_kb, proc_sample(self._cluster).rss_kb)
            if rounds % 4 == 0:  # the process walk is the costly part
                self.containers_kb = max(self.containers_kb, tree_rss_kb(self._cluster))
                self.sockets = max(self.sockets, open_sockets())
            rounds += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


async def memory_snapshot(running: asyncio.Future[Any], after: float) -> None:
    """Where this process's Python memory is, `after` seconds into the batch (tracemalloc)."""
    tracemalloc.start(25)
    try:
        await asyncio.wait([running], timeout=after)
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats)
    print(f"--- tracemalloc, {after:.0f} s in: {total / 2**20:.1f} MiB traced, top 15 lines")
    for stat in stats[:15]:
        frame = stat.traceback[0]
        print(f"{stat.size / 2**20:8.2f} MiB {stat.count:8d} blocks  {frame.filename}:{frame.lineno}")


async def runner_batch(
    client: KubeClient, cluster_pid: int, jobs: int, lines: int, trace_memory: bool = False
) -> dict[str, Any]:
    reset_peak_rss()
    idle = proc_sample()
    cluster_before = proc_sample(cluster_pid)
    sinks = [KeepSink() for _ in range(jobs)]
    sampler = Sampler(cluster_pid)
    settings = ExecutorSettings()

    async def one(n: int) -> JobResult:
        trace = Trace()
        trace.add_sink(sinks[n])
        try:
            return await run_job(
                request=job_request(f"conc-{n}", [script(lines)], timeout=lines * 0.1 + 600),
                client=client,
                settings=settings,
                trace=trace,
                cancel=asyncio.Event(),
            )
        finally:
            trace.close()

    cpu_before, start = time.process_time(), time.monotonic()
    gathered = asyncio.gather(*(one(n) for n in range(jobs)))
    if trace_memory:
        await memory_snapshot(gathered, lines * 0.1 / 2 + 5)
    results = await gathered
    wall, cpu = time.monotonic() - start, time.process_time() - cpu_before
    sampler.stop()
    after = proc_sample()
    return {
        "wall_s": wall,
        "runner_cpu_s": cpu,
        "runner_idle_rss_kb": idle.rss_kb,
        "runner_peak_rss_kb": max(after.hwm_kb, sampler.runner_kb),
        "cluster_peak_rss_kb": max(proc_sample(cluster_pid).hwm_kb, sampler.cluster_kb),
        "cluster_rss_before_kb": cluster_before.rss_kb,
        "cluster_cpu_s": proc_sample(cluster_pid).cpu - cluster_before.cpu,
        "containers_peak_rss_kb": sampler.containers_kb,
        "runner_sockets_peak": sampler.sockets,
        "succeeded": sum(isinstance(r, Success) for r in results),
        "failures": sorted({str(r) for r in results if not isinstance(r, Success)})[:5],
        "lines_exact": sum(lines_ok(bytes(s.data), lines) for s in sinks),
    }


async def sh_batch(jobs: int, lines: int) -> dict[str, Any]:
    """The same scripts run by `sh` directly, all at once: what the jobs themselves cost."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    processes = [
        await asyncio.create_subprocess_exec("sh", "-c", script(lines), stdout=asyncio.subprocess.PIPE)
        for _ in range(jobs)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in processes))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": time.monotonic() - start,
        "cpu_s": cpu,
        "lines_exact": sum(lines_ok(out, lines) for out, _ in outputs),
    }


async def run_all(
    cluster: ClusterProcess, sizes: list[int], lines: int, trace_memory: bool
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    client = await open_client(cluster.kubeconfig, pool_size=max(300, 4 * max(sizes) + 50))
    try:
        for jobs in sizes:
            found[str(jobs)] = {
                "sh": await sh_batch(jobs, lines),
                "runner": await runner_batch(client, cluster.pid, jobs, lines, trace_memory),
            }
            r = found[str(jobs)]["runner"]
            print(
                f"  {jobs} jobs: {r['wall_s']:.1f} s, "
                f"runner peak RSS {r['runner_peak_rss_kb'] / 1024:.0f} MB, "
                f"{r['lines_exact']}/{jobs} exact",
                flush=True,
            )
    finally:
        await client.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, action="append")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tracemalloc", action="store_true", help="print where Python memory is, mid-batch")
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--tls-read-buffer", type=int, metavar="BYTES", help="experiment: each TLS connection's read buffer"
    )
    args = parser.parse_args()
    set_tls_read_buffer(args.tls_read_buffer)
    sizes = args.jobs or [10, 50, 200]
    lines = int(args.seconds * 10)

    if len(sizes) > 1:
        found = {}
        for jobs in sizes:  # a fresh runner process each, so no batch inherits another's memory
            with tempfile.TemporaryDirectory(prefix="kr-bench-conc-") as tmp:
                out = Path(tmp) / "found.json"
                extra = ["--tracemalloc"] if args.tracemalloc else []
                if args.tls_read_buffer is not None:
                    extra += ["--tls-read-buffer", str(args.tls_read_buffer)]
                child = [sys.executable, __file__, "--jobs", str(jobs), "--seconds", str(args.seconds)]
                subprocess.run([*child, "--result-file", str(out), *extra], check=True)
                found.update(json.loads(out.read_text()))
    else:
        with ClusterProcess() as cluster:
            found = asyncio.run(run_all(cluster, sizes, lines, args.tracemalloc))
        if args.result_file is not None:
            args.result_file.write_text(json.dumps(found))
            return

    rows: list[list[object]] = []
    for jobs, data in found.items():
        r, sh = data["runner"], data["sh"]
        mb = 1024
        rows.append(
            [
                jobs,
                f"{r['runner_idle_rss_kb'] / mb:.0f}",
                f"{r['runner_peak_rss_kb'] / mb:.0f}",
                f"{(r['runner_peak_rss_kb'] - r['runner_idle_rss_kb']) / mb / int(jobs):.2f}",
                f"{r['runner_cpu_s']:.1f}",
                f"{sh['cpu_s']:.1f}",
                ratio(r["runner_cpu_s"], sh["cpu_s"]),
                r["runner_sockets_peak"],
            f"{r['cluster_peak_rss_kb'] / mb:.0f}",
                f"{r['cluster_cpu_s']:.1f}",
                f"{r['wall_s']:.1f} / {sh['wall_s']:.1f}",
                f"{r['succeeded']}/{jobs}",
                f"{r['lines_exact']}/{jobs}",
            ]
        )
    print(
        f"\neach job prints a line every 100 ms for {args.seconds:g} s ({lines} lines); "
        "RSS in MB (2^20 bytes)"
    )
    print(
        table(
            [
                "jobs",
                "runner RSS idle",
                "runner RSS peak",
                "MB per job",
                "runner CPU s",
                "sh CPU s (baseline)",
                "runner CPU vs sh",
                "runner sockets peak",
                "cluster RSS peak",
                "cluster CPU s",
                "wall s runner / sh",
                "succeeded",
                "lines exactly once",
            ],
            rows,
        )
    )
    last = found[str(max(sizes))]["runner"]
    peak = last["runner_peak_rss_kb"] / 1024
    exact = last["lines_exact"] == max(sizes)
    print(
        f"goal at {max(sizes)} jobs: runner RSS <= 250 MB and every line once: "
        f"{'met' if peak <= 250 and exact else 'MISSED'} "
        f"({peak:.0f} MB, {last['lines_exact']}/{max(sizes)} exact)"
    )
    print(f"results: {write_json('concurrency', {'seconds': args.seconds, 'results': found})}")


if __name__ == "__main__":
    main()
