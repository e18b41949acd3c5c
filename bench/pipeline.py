"""A 20-job pipeline (4 stages of 5 jobs, each `sleep 1`) against its critical path (issue 14).

`kuberunner exec` runs as a user runs it (a subprocess, output to a pipe), on a `kuberunner cluster`
started once. The baseline, in the same run: the critical path alone, a 4-job chain (one `sleep 1`
job per stage), which costs the same start-up and the same per-stage pod overhead. Goal: the 20 jobs
take at most 1.3x the chain. The runner's peak RSS comes from wait4() of its process.

    .venv/bin/python bench/pipeline.py [--runs 3] [--concurrency 5]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BIN, ClusterProcess, median, proc_sample, ratio, table, write_json

STAGES = ("one", "two", "three", "four")


def pipeline(per_stage: int) -> str:
    lines = [f"stages: [{', '.join(STAGES)}]"]
    for stage in STAGES:
        for n in range(per_stage):
            lines.append(f"{stage}-{n}:\n  stage: {stage}\n  script: sleep 1")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Sample:
    wall: float
    rss_kb: int
    runner_cpu: float
    cluster_cpu: float
    handoff: float
    """Longest wait from a stage's last job ending to the next stage's first job starting (the scheduler's
    own cost, from the arrival times of the `=== job` lines on stdout)."""
    job_mean: float
    """Mean job duration in the summary table: what a job costs with the others running beside it."""


_HEADER = re.compile(rb"^=== (\S+)-\d+ \(stage ")
_ENDED = re.compile(rb"^=== (\S+)-\d+: passed in ")
_SUMMARY = re.compile(rb"^\S+ +\S+ +passed +([0-9.]+)s$")


def run_once(workdir: Path, cluster: ClusterProcess, text: str, concurrency: int | None) -> Sample:
    """One `kuberunner exec` of `text`, its stdout read line by line as it comes."""
    (workdir / ".gitlab-ci.yml").write_text(text)
    args = [str(BIN / "kuberunner"), "exec", "--kubeconfig", str(cluster.kubeconfig), "--no-color"]
    args += ["-f", str(workdir / ".gitlab-ci.yml")]
    if concurrency is not None:
        args += ["--concurrency", str(concurrency)]
    cluster_before = proc_sample(cluster.pid).cpu
    started = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    first_start: dict[str, float] = {}
    last_end: dict[str, float] = {}
    durations: list[float] = []
    for line in process.stdout:
        now = time.monotonic()
        if header := _HEADER.match(line):
            first_start.setdefault(header.group(1).decode(), now)
        elif ended := _ENDED.match(line):
            last_end[ended.group(1).decode()] = now
        elif summary := _SUMMARY.match(line.rstrip()):
            durations.append(float(summary.group(1)))
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"kuberunner exec failed ({os.waitstatus_to_exitcode(status)})")
    handoffs = [
        first_start[later] - last_end[earlier]
        for earlier, later in itertools.pairwise(STAGES)
        if earlier in last_end and later in first_start
    ]
    return Sample(
        wall=elapsed,
        rss_kb=usage.ru_maxrss,
        runner_cpu=usage.ru_utime + usage.ru_stime,
        cluster_cpu=proc_sample(cluster.pid).cpu - cluster_before,
        handoff=max(handoffs, default=0.0),
        job_mean=sum(durations) / len(durations) if durations else float("nan"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=5, help="jobs at once for the 20-job pipeline")
    args = parser.parse_args()
    cases = {
        "critical path: 4-job chain (baseline)": (pipeline(1), None),
        f"20 jobs, --concurrency {args.concurrency}": (pipeline(5), args.concurrency),
        f"20 jobs, default concurrency (4 x {os.cpu_count()} CPUs)": (pipeline(5), None),
    }
    found: dict[str, list[Sample]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory(prefix="kr-bench-pipeline-") as tmp, ClusterProcess() as cluster:
        workdir = Path(tmp)
        for _ in range(args.runs):
            for name, (text, concurrency) in cases.items():
                found[name].append(run_once(workdir, cluster, text, concurrency))
    baseline = median([sample.wall for sample in found["critical path: 4-job chain (baseline)"]])
    rows = []
    for name, samples in found.items():
        wall = median([sample.wall for sample in samples])
        rows.append(
            (
                name,
                f"{wall:.2f} s",
                ratio(wall, baseline),
                f"{median([sample.job_mean for sample in samples]):.2f} s",
                f"{max(sample.handoff for sample in samples) * 1000:.0f} ms",
                f"{max(sample.rss_kb for sample in samples) / 1024:.0f} MB",
                f"{median([sample.runner_cpu for sample in samples]):.2f} s",
                f"{median([sample.cluster_cpu for sample in samples]):.2f} s",
            )
        )
    headers = ("pipeline", f"wall (median of {args.runs})", "vs critical path", "mean job")
    print(table((*headers, "worst stage handoff", "runner peak RSS", "runner CPU", "cluster CPU"), rows))
    print("goal: the 20 jobs within 1.3x the critical path (4 x sleep 1 plus start-up and pod overhead)")
    path = write_json(
        "pipeline", {name: [asdict(sample) for sample in samples] for name, samples in found.items()}
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
