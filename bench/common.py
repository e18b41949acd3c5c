"""What every benchmark shares: the cluster as its own process, /proc readings, jobs, tables, JSON.

The cluster always runs as a separate `kuberunner cluster` process, so the runner's costs (this
process) and the cluster's (that process and its containers) are read apart from /proc. psutil is
not a dependency: /proc/<pid>/stat and /proc/<pid>/status are read directly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kuberunner.executor.job import JobRequest
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.job.spec import JobSpec
from kuberunner.kube import config as kube_config
from kuberunner.kube.client import KubeClient

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True, slots=True)
class ProcSample:
    """CPU seconds (user + system) and memory (kB) of one process at one moment."""

    cpu: float
    rss_kb: int
    hwm_kb: int


def proc_sample(pid: int | str = "self") -> ProcSample:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # Field 2 (comm) may hold spaces: count from the closing parenthesis.
    fields = stat[stat.rindex(b")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK
    rss = hwm = 0
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith(b"VmHWM:"):
                hwm = int(line.split()[1])
    return ProcSample(cpu=cpu, rss_kb=rss, hwm_kb=hwm)


def set_tls_read_buffer(size: int | None) -> None:
    """An experiment knob: asyncio gives every TLS connection a read buffer of this many bytes
    (256 KiB by default in Python 3.11), which dominates the runner's memory per job."""
    if size is not None:
        import asyncio.sslproto

        asyncio.sslproto.SSLProtocol.max_size = size


def reset_peak_rss() -> None:
    """This process's VmHWM starts over (Linux >= 4.0), so a run's peak is its own."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (the cluster's containers and their children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_rss_kb(pid: int) -> int:
    """Summed RSS of `pid`'s descendants (shared pages counted in each, so an upper bound)."""
    total = 0
    for child in descendants(pid):
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{child}/statm", "rb") as f:
            total += int(f.read().split()[1]) * _PAGE_KB
    return total


class ClusterProcess:
    """`kuberunner cluster` in its own process, ready once its kubeconfig exists."""

    def __init__(self, *forbid: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="kr-bench-cluster-")
        root = Path(self._tmp.name)
        self.kubeconfig = root / "kubeconfig"
        self._log = (root / "cluster.log").open("wb")
        args = [str(BIN / "kuberunner"), "cluster", "--kubeconfig-out", str(self.kubeconfig)]
        args += ["--state-dir", str(root / "state")]
        for resource in forbid:
            args += ["--forbid", resource]
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not self.kubeconfig.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the cluster did not start: " + (root / "cluster.log").read_text())
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self._tmp.cleanup()

    def __enter__(self) -> ClusterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Target:
    """Where a benchmark's jobs run: a `kuberunner cluster` process of its own, or, with a kubeconfig,
    a cluster that is already there (a real one). A real cluster's images come from
    $KUBERNETES_IMAGE / $KUBERNETES_HELPER_IMAGE, as for `kuberunner exec`, and must be on the node:
    nothing the benchmarks start pulls an image."""

    def __init__(self, kubeconfig: Path | None, *forbid: str) -> None:
        self.embedded: ClusterProcess | None = None
        self.image: str | None = None
        self.helper_image: str | None = None
        if kubeconfig is None:
            self.embedded = ClusterProcess(*forbid)
            self.kubeconfig = self.embedded.kubeconfig
        else:
            self.kubeconfig = kubeconfig
            self.image = os.environ.get("KUBERNETES_IMAGE") or None
            self.helper_image = os.environ.get("KUBERNETES_HELPER_IMAGE") or None

    @property
    def pid(self) -> int | None:
        """The embedded cluster's process; None for a cluster whose processes are not ours to read."""
        return self.embedded.pid if self.embedded is not None else None

    @property
    def name(self) -> str:
        return "embedded cluster" if self.embedded is not None else f"cluster of {self.kubeconfig}"

    def settings(self, **overrides: Any) -> ExecutorSettings:
        if self.image is not None:
            overrides.setdefault("image", self.image)
            overrides.setdefault("helper_image", self.helper_image)
        return ExecutorSettings(**overrides)

    def pod_image(self) -> dict[str, str]:
        """`image` (and pull policy) of a bare pod a baseline creates itself."""
        if self.image is None:
            return {"image": "alpine"}
        return {"image": self.image, "imagePullPolicy": "Never"}

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.close()

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def add_target_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="PATH",
        help="run against this cluster instead of starting an embedded one; its job image comes from "
        "$KUBERNETES_IMAGE (e.g. under `scripts/real-cluster exec --`) and is never pulled",
    )


def check_target(parser: argparse.ArgumentParser, kubeconfig: Path | None) -> None:
    """Bad input is one line and exit status 2 (argparse's), before anything starts."""
    if kubeconfig is None:
        return
    if not kubeconfig.is_file():
        parser.error(f"--kubeconfig {kubeconfig}: no such file")
    if not os.environ.get("KUBERNETES_IMAGE"):
        parser.error("--kubeconfig needs $KUBERNETES_IMAGE: an image already on the node (never pulled)")


async def open_client(kubeconfig: Path, *, pool_size: int = 300) -> KubeClient:
    cfg = await kube_config.load_kubeconfig(kubeconfig, None)
    return await KubeClient.open(cfg, pool_size=pool_size)


def job_request(
    name: str, script: Sequence[str], *, legacy: bool = False, timeout: float = 600
) -> JobRequest:
    """A job with no project archive (nothing to unpack) and only the variables a job needs."""
    job_id = str(secrets.randbelow(10**9))
    variables = (("CI", "true"), ("CI_JOB_ID", job_id), ("CI_JOB_NAME", name))
    return JobRequest(
        job=JobSpec(name=name, script=tuple(script)),
        job_id=job_id,
        variables=variables,
        project_dir=f"/builds/{name}",
        project_archive=None,
        timeout=timeout,
        legacy_exec=legacy,
    )


class NullSink:
    """A trace sink that only counts: for runs where the trace content is checked elsewhere."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    def close(self) -> None:
        pass


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit,
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    payload = {"benchmark": name, "machine": machine(), "command": " ".join(sys.argv), **data}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, readable as plain text too."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline > 0 else "n/a"


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
