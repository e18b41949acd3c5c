"""Start latency: from `kuberunner exec` being started to the job's first output byte, in phases.

`kuberunner exec` runs as a user runs it (a subprocess, output to a pipe); the arrival time of each
of its lines splits the wait into phases:

- process start: exec() to "Running with kuberunner" (interpreter, imports, config, API client;
  with the in-process embedded cluster, starting that cluster too);
- pod creation to Running: "Using Kubernetes namespace" to "Running on <pod>";
- first stage: "Running on" to the job's first byte (the echo of its first command), itself split
  into opening the log reader + get_sources, and step_script's start to its first byte.

Baselines in the same run: `sh -c 'echo'` (a process's first byte) and `kubectl run --attach`
of the same command against the same cluster. Goal on the embedded cluster: <= 1 s in total.

With `--kubeconfig` both `kuberunner exec` and `kubectl run --attach --rm` (in $KUBERNETES_IMAGE,
never pulled) run against that cluster, e.g. a real one under `scripts/real-cluster exec --`; no
embedded cluster is started and the in-process row is left out. Goal there: <= 1.5 s on a warm node.

    .venv/bin/python bench/start_latency.py [--runs 5] [--kubeconfig PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BIN, Target, add_target_option, check_target, median, ratio, table, write_json

PIPELINE = "latency:\n  script:\n    - echo first-byte\n"
MARKS = {
    "running_with": b"Running with kuberunner",
    "namespace": b"Using Kubernetes namespace",
    "running_on": b"Running on ",
    "step_script": b'Executing "step_script"',
    "first_byte": b"$ echo first-byte",
}


@dataclass
class Arrivals:
    """Every chunk read from one pipe, with the monotonic time it arrived."""

    chunks: list[tuple[float, bytes]] = field(default_factory=list)

    def read_all(self, fd: int) -> None:
        while data := os.read(fd, 65536):
            self.chunks.append((time.monotonic(), data))

    def time_of(self, needle: bytes) -> float | None:
        """When the first byte of `needle` arrived."""
        whole = b"".join(data for _, data in self.chunks)
        at = whole.find(needle)
        if at < 0:
            return None
        seen = 0
        for when, data in self.chunks:
            seen += len(data)
            if seen > at:
                return when
        return None


def timed_run(args: list[str], env: dict[str, str] | None = None) -> tuple[float, Arrivals, int]:
    """Start `args`; returns its start time, its stdout arrivals and its exit status."""
    out = Arrivals()
    start = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert process.stdout is not None
    reader = threading.Thread(target=out.read_all, args=(process.stdout.fileno(),))
    reader.start()
    code = process.wait(timeout=120)
    reader.join()
    process.stdout.close()
    return start, out, code


def runner_once(workdir: Path, kubeconfig: Path | None) -> dict[str, float]:
    args = [str(BIN / "kuberunner"), "exec", "-f", str(workdir / ".gitlab-ci.yml"), "--no-color"]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    if kubeconfig is not None:
        args += ["--kubeconfig", str(kubeconfig)]
    else:
        env["HOME"] = str(workdir)  # no ~/.kube/config: `exec` starts its own embedded cluster
    start, out, code = timed_run(args, env)
    if code != 0:
        raise RuntimeError(f"kuberunner exec exited {code}: {b''.join(d for _, d in out.chunks)!r}")
    at = {name: out.time_of(needle) for name, needle in MARKS.items()}
    missing = [name for name, when in at.items() if when is None]
    if missing:
        raise RuntimeError(f"not in the output: {missing}")
    t = {name: (when or 0.0) - start for name, when in at.items()}
    return {
        "process start": t["running_with"],
        "pod creation to Running": t["running_on"] - t["namespace"],
        "first stage: log reader + get_sources": t["step_script"] - t["running_on"],
        "first stage: step_script to first byte": t["first_byte"] - t["step_script"],
        "total to first byte": t["first_byte"],
    }


def sh_once() -> dict[str, float]:
    start, out, _ = timed_run(["sh", "-c", "echo first-byte"])
    return {"total to first byte": (out.time_of(b"first-byte") or start) - start}


def python_once() -> dict[str, float]:
    """The interpreter and kuberunner's imports alone: the floor of "process start"."""
    start, out, _ = timed_run([sys.executable, "-c", "import kuberunner.local; print('first-byte')"])
    return {"total to first byte": (out.time_of(b"first-byte") or start) - start}


def kubectl_once(target: Target, n: int) -> dict[str, float]:
    image = target.pod_image()
    pull = [f"--image-pull-policy={image['imagePullPolicy']}"] if "imagePullPolicy" in image else []
    args = [
        str(BIN / "kubectl"),
        "--kubeconfig",
        str(target.kubeconfig),
        "run",
        f"bench-latency-{os.getpid()}-{n}",
        f"--image={image['image']}",
        *pull,
        "--restart=Never",
        "--attach",
        "--rm",
        "--command",
        "--",
        "echo",
        "first-byte",
    ]
    start, out, code = timed_run(args)
    when = out.time_of(b"first-byte")
    if code != 0 or when is None:
        raise RuntimeError(f"kubectl run exited {code}")
    return {"total to first byte": when - start}


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: median([run[key] for run in runs]) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    add_target_option(parser)
    args = parser.parse_args()
    check_target(parser, args.kubeconfig)

    found: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="kr-bench-lat-") as tmp:
        workdir = Path(tmp)
        (workdir / ".gitlab-ci.yml").write_text(PIPELINE)
        with Target(args.kubeconfig) as target:
            for n in range(args.runs):
                found.setdefault("sh -c echo (baseline)", []).append(sh_once())
                found.setdefault("python + imports (baseline)", []).append(python_once())
                found.setdefault("kubectl run --attach (baseline)", []).append(kubectl_once(target, n))
                found.setdefault("kuberunner exec, cluster running", []).append(
                    runner_once(workdir, target.kubeconfig)
                )
        for _ in range(args.runs if args.kubeconfig is None else 0):
            found.setdefault("kuberunner exec, embedded in-process", []).append(runner_once(workdir, None))

    summary = {label: medians(runs) for label, runs in found.items()}
    phases = list(summary["kuberunner exec, cluster running"])
    kubectl = summary["kubectl run --attach (baseline)"]["total to first byte"]
    rows: list[list[object]] = []
    for label, values in summary.items():
        total = values["total to first byte"]
        cells = [f"{values[p] * 1000:.0f}" if p in values else "-" for p in phases]
        rows.append([label, *cells, ratio(total, kubectl)])
    print(f"median of {args.runs} runs on the {target.name}, milliseconds from process start")
    print(table(["", *phases, "total vs kubectl run"], rows))
    total = summary["kuberunner exec, cluster running"]["total to first byte"]
    goal = 1.0 if args.kubeconfig is None else 1.5
    print(
        f"goal: <= {goal} s to the first byte (cluster running): "
        f"{'met' if total <= goal else 'MISSED'} ({total:.2f} s)"
    )
    data: dict[str, Any] = {"target": target.name, "runs": found, "medians": summary}
    print(f"results: {write_json('start_latency', data)}")


if __name__ == "__main__":
    main()
