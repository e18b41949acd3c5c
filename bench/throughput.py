"""Log throughput: MB/s from a job's stdout to the trace file, against `kubectl logs -f` and `sh > file`.

Two shapes of the same size: one unbroken stream of `x` (no newline at all) and 80-byte lines.
For each, in one run against one `kuberunner cluster` process:

- `sh > file`: the producer alone, writing to a file (the physical baseline);
- `kubectl logs -f`: a pod printing the same bytes to stdout, followed by real kubectl, from the
  attach write that starts the producer to the end of kubectl's stream (kubectl's start-up excluded);
- the runner's attach strategy with the file and the kubelet transports, and the legacy exec
  strategy: the `step_script` stage from its start line to its exit marker, with the trace going
  to a file; runner CPU is this process's user+system time during that stage.

Goals: the file transport >= 150 MB/s and faster than `kubectl logs -f`; runner CPU <= 3 s per GiB.

With `--kubeconfig` every pod (the runner's and the `kubectl logs -f` one) runs on that cluster, e.g. a
real one under `scripts/real-cluster exec --`, in $KUBERNETES_IMAGE; no embedded cluster is started
and the cluster's CPU is not read.

    .venv/bin/python bench/throughput.py [--size 256M] [--shape stream|lines]... [--variant NAME]...
                                         [--kubeconfig PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BIN,
    Target,
    add_target_option,
    check_target,
    job_request,
    open_client,
    proc_sample,
    ratio,
    reset_peak_rss,
    set_tls_read_buffer,
    table,
    write_json,
)
from timing import StageTimes, timed_strategies

from kuberunner.executor.job import run_job
from kuberunner.executor.results import Success
from kuberunner.kube import streams
from kuberunner.kube.client import KubeClient
from kuberunner.trace import FileSink, Trace

MB = 1_000_000
GIB = 2**30
RUNNER_VARIANTS = {
    "attach/file": ("file", False),
    "attach/kubelet": ("kubelet", False),
    "legacy exec": ("file", True),
}
VARIANTS = ("sh > file", "kubectl logs -f", *RUNNER_VARIANTS)


def producer(shape: str, size: int) -> str:
    if shape == "stream":
        return f"head -c {size} /dev/zero | tr '\\0' x"
    # `yes` dies of SIGPIPE when head is done; stage scripts run with pipefail, so that is no failure.
    return f"{{ yes $(head -c 79 /dev/zero | tr '\\0' x) 2>/dev/null || :; }} | head -c {size}"


def parse_size(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    if text and text[-1].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def expected_chunks(shape: str, size: int) -> Iterator[bytes]:
    """The job's bytes, 4 MiB at a time."""
    unit = b"x" * (2**22) if shape == "stream" else (b"x" * 79 + b"\n") * (2**22 // 80)
    left = size
    while left > 0:
        yield unit[:left]
        left -= min(left, len(unit))


def check_output(path: Path, shape: str, size: int, *, traced: bool) -> str:
    """ "ok" if the file holds exactly the job's bytes; in a trace, after the command's echo line and
    followed only by the runner's own lines."""
    with path.open("rb") as f:
        if traced:
            head = f.read(2**16)
            echo = head.find(b"\x1b[32;1m$ ")
            if echo < 0:
                return "no command echo in the trace"
            f.seek(head.index(b"\n", echo) + 1)
        done = 0
        for want in expected_chunks(shape, size):
            got = f.read(len(want))
            if got != want:
                where = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), len(got))
                return f"wrong byte at job offset {done + where}"
            done += len(got)
        rest = f.read(2**16)
    if rest and not (traced and rest.startswith(b"\n") and b"x" * 79 not in rest):
        return f"{len(rest)}+ unexpected bytes after the job's output: {rest[:40]!r}"
    return "ok"


def sh_to_file(command: str, out: Path) -> dict[str, Any]:
    start = time.monotonic()
    with out.open("wb") as f:
        subprocess.run(["sh", "-c", command], stdout=f, check=True)
    return {"seconds": time.monotonic() - start}


async def kubectl_follow(client: KubeClient, target: Target, command: str, out: Path) -> dict[str, Any]:
    """A pod printing `command`'s output, followed by `kubectl logs -f`.

    The pod waits for a line on its stdin, written through pods/attach as the runner starts a
    stage, so the clock runs from that write to the end of kubectl's stream, as for the runner.
    """
    name = f"bench-logs-{int(time.time() * 1000) % 10**9}"
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    **target.pod_image(),
                    "command": ["sh", "-c", f"read go; {command}"],
                    "stdin": True,
                }
            ],
        },
    }
    await client.create_pod("default", body)
    try:
        async with asyncio.timeout(180):  # a pod that never starts is an error, not a hang
            async for _, pod in client.watch_pod("default", name):
                phase = pod.get("status", {}).get("phase")
                if phase == "Running":
                    break
                if phase in ("Succeeded", "Failed"):
                    raise RuntimeError(f"the kubectl logs pod ended before its input: {phase}")
        process = await asyncio.create_subprocess_exec(
            str(BIN / "kubectl"),
            "--kubeconfig",
            str(target.kubeconfig),
            "logs",
            "-f",
            name,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        await asyncio.sleep(1.0)  # kubectl's own start-up is not what is measured
        first = time.monotonic()
        await streams.attach_write(client, namespace="default", pod=name, container="main", data=b"go\n")
        with out.open("wb") as f:
            while chunk := await process.stdout.read(2**20):
                f.write(chunk)
        last = time.monotonic()
        code = await process.wait()
        if code != 0:
            raise RuntimeError(f"kubectl logs -f exited {code}")
        return {"seconds": last - first}
    finally:
        await client.delete_pod("default", name, grace_seconds=0)


async def runner_job(
    client: KubeClient, target: Target, label: str, command: str, out: Path, profile: Path | None
) -> dict[str, Any]:
    transport, legacy = RUNNER_VARIANTS[label]
    times = StageTimes(other_pid=target.pid)
    trace = Trace()
    trace.add_sink(FileSink(out))
    settings = target.settings(log_transport=transport)
    # CPU time, not wall time: waiting in epoll is not a cost of the runner.
    profiler = cProfile.Profile(time.process_time) if profile is not None else None
    reset_peak_rss()
    with timed_strategies(lambda _r: times):
        if profiler is not None:
            profiler.enable()
        try:
            result = await run_job(
                request=job_request("throughput", [command], legacy=legacy),
                client=client,
                settings=settings,
                trace=trace,
                cancel=asyncio.Event(),
            )
        finally:
            if profiler is not None:
                profiler.disable()
            trace.close()
    if not isinstance(result, Success):
        raise RuntimeError(f"{label}: {result}")
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    found: dict[str, Any] = {
        "seconds": sum(times.durations("step_script")),
        "runner_cpu_s": times.cpu_of("step_script"),
        "runner_peak_rss_kb": proc_sample().hwm_kb,
    }
    if target.pid is not None:
        found["cluster_cpu_s"] = times.other_cpu_of("step_script")
    return found


async def run_shape(
    target: Target, shape: str, size: int, variants: list[str], tmp: Path, profile: bool
) -> dict[str, dict[str, Any]]:
    command = producer(shape, size)
    found: dict[str, dict[str, Any]] = {}
    out = tmp / "out"
    client = await open_client(target.kubeconfig)
    try:
        for label in variants:
            if label == "sh > file":
                found[label] = sh_to_file(command, out)
            elif label == "kubectl logs -f":
                found[label] = await kubectl_follow(client, target, command, out)
            else:
                prof = tmp / f"{shape}-{label.replace('/', '-').replace(' ', '-')}.prof" if profile else None
                found[label] = await runner_job(client, target, label, command, out, prof)
                if prof is not None:
                    print(f"--- cProfile of the runner, {shape}, {label} (top 12 by own time)")
                    pstats.Stats(str(prof)).sort_stats("tottime").print_stats(12)
            found[label]["mb_per_s"] = size / found[label]["seconds"] / MB
            found[label]["bytes"] = check_output(out, shape, size, traced=label in RUNNER_VARIANTS)
            out.unlink(missing_ok=True)
            print(f"  {shape:6} {label:16} {found[label]['mb_per_s']:8.1f} MB/s", flush=True)
    finally:
        await client.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="256M", help="bytes per job, e.g. 256M (default), 64M")
    parser.add_argument("--shape", action="append", choices=("stream", "lines"))
    parser.add_argument("--variant", action="append", choices=VARIANTS)
    parser.add_argument("--profile", action="store_true", help="cProfile the runner's jobs and print the top")
    parser.add_argument(
        "--tls-read-buffer", type=int, metavar="BYTES", help="experiment: each TLS connection's read buffer"
    )
    add_target_option(parser)
    args = parser.parse_args()
    check_target(parser, args.kubeconfig)
    set_tls_read_buffer(args.tls_read_buffer)
    size = parse_size(args.size)
    shapes = args.shape or ["stream", "lines"]
    variants = args.variant or list(VARIANTS)

    results: dict[str, dict[str, dict[str, Any]]] = {}
    with Target(args.kubeconfig) as target, tempfile.TemporaryDirectory(prefix="kr-bench-tp-") as tmp:
        for shape in shapes:
            results[shape] = asyncio.run(run_shape(target, shape, size, variants, Path(tmp), args.profile))

    rows: list[list[object]] = []
    for shape, found in results.items():
        base = found.get("sh > file", {}).get("mb_per_s", 0.0)
        kubectl = found.get("kubectl logs -f", {}).get("mb_per_s", 0.0)
        for label, data in found.items():
            gib = size / GIB
            cpu = f"{data['runner_cpu_s'] / gib:.2f}" if "runner_cpu_s" in data else "-"
            cluster_cpu = f"{data['cluster_cpu_s'] / gib:.2f}" if "cluster_cpu_s" in data else "-"
            rows.append(
                [
                    shape,
                    label,
                    f"{data['mb_per_s']:.1f}",
                    ratio(data["mb_per_s"], base),
                    ratio(data["mb_per_s"], kubectl),
                    cpu,
                    cluster_cpu,
                    data["bytes"],
                ]
            )
    print(f"\n{size} bytes ({size / 2**20:.0f} MiB) per job on the {target.name}; MB = 10^6 bytes")
    print(
        table(
            [
                "shape",
                "path",
                "MB/s",
                "vs sh > file",
                "vs kubectl logs -f",
                "runner CPU s/GiB",
                "cluster CPU s/GiB",
                "bytes exact",
            ],
            rows,
        )
    )
    for shape, found in results.items():
        if "attach/file" in found and "kubectl logs -f" in found:
            file_rate, kubectl_rate = found["attach/file"]["mb_per_s"], found["kubectl logs -f"]["mb_per_s"]
            met = file_rate >= 150 and file_rate > kubectl_rate
            print(
                f"goal ({shape}): attach/file >= 150 MB/s and faster than kubectl logs -f: "
                f"{'met' if met else 'MISSED'} ({file_rate:.1f} vs {kubectl_rate:.1f} MB/s)"
            )
    path = write_json("throughput", {"size": size, "target": target.name, "results": results})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
