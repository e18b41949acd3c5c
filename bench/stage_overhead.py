"""Stage overhead: what it costs the runner to start a stage and hear its end, against plain `sh`.

One job per strategy (attach with the file transport, attach with the kubelet transport, legacy
exec) runs in one pod; its `step_script` (`true`) is run `--stages` times in a row through the
strategy's own `run_stage`, i.e. 50 separate stage starts, each with its own start line (or exec),
exit marker and wait. The baseline runs the very same rendered stage script with `sh` directly on
this machine, the same number of times. Goal: attach adds <= 20 ms per stage.

With `--kubeconfig` the pods run on that cluster (e.g. a real one, under `scripts/real-cluster exec
--`) and no embedded cluster is started; the baseline is still `sh` on this machine, and the
cluster's CPU is not read (its processes are not ours).

    .venv/bin/python bench/stage_overhead.py [--stages 50] [--kubeconfig PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    NullSink,
    Target,
    add_target_option,
    check_target,
    job_request,
    median,
    open_client,
    ratio,
    table,
    write_json,
)
from timing import StageTimes, timed_strategies

from kuberunner.executor.job import JobRequest, run_job
from kuberunner.executor.results import Success
from kuberunner.shell.render import render_user_stage
from kuberunner.trace import Trace

VARIANTS = (
    ("attach/file", "file", False),
    ("attach/kubelet", "kubelet", False),
    ("legacy exec", "file", True),
)


def sh_baseline(stages: int) -> list[float]:
    """The same rendered step_script, run by `sh` from this process, `stages` times."""
    request = job_request("stage-overhead", ["true"])
    with tempfile.TemporaryDirectory(prefix="kr-bench-sh-") as tmp:
        script = Path(tmp) / "step_script"
        script.write_text(
            render_user_stage(commands=request.job.script, variables=request.variables, project_dir=tmp)
        )
        times = []
        for _ in range(stages):
            start = time.monotonic()
            subprocess.run(
                ["sh", str(script)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True
            )
            times.append(time.monotonic() - start)
    return times


def _always(times: StageTimes) -> Callable[[JobRequest], StageTimes]:
    return lambda _request: times


async def runner_stages(target: Target, *, stages: int) -> dict[str, dict[str, Any]]:
    client = await open_client(target.kubeconfig)
    found: dict[str, dict[str, Any]] = {}
    try:
        for label, transport, legacy in VARIANTS:
            times = StageTimes(other_pid=target.pid)
            request = job_request("stage-overhead", ["true"], legacy=legacy)
            settings = target.settings(log_transport=transport)
            sink = NullSink()
            trace = Trace()
            trace.add_sink(sink)
            with timed_strategies(_always(times), repeat=stages):
                result = await run_job(
                    request=request, client=client, settings=settings, trace=trace, cancel=asyncio.Event()
                )
            trace.close()
            durations = times.durations("step_script")
            if not isinstance(result, Success) or len(durations) != stages:
                raise RuntimeError(f"{label}: {result} after {len(durations)} stages")
            found[label] = {
                "per_stage_s": durations,
                "runner_cpu_s": times.cpu_of("step_script"),
                "cluster_cpu_s": times.other_cpu_of("step_script"),
                "trace_bytes": sink.bytes,
            }
    finally:
        await client.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stages", type=int, default=50)
    add_target_option(parser)
    args = parser.parse_args()
    check_target(parser, args.kubeconfig)

    baseline = sh_baseline(args.stages)
    with Target(args.kubeconfig) as target:
        measured = asyncio.run(runner_stages(target, stages=args.stages))
    base_median = median(baseline)
    rows: list[list[object]] = [
        [
            "sh directly (baseline)",
            f"{base_median * 1000:.1f}",
            f"{max(baseline) * 1000:.1f}",
            "0.0",
            "1.00x",
            "-",
            "-",
        ]
    ]
    for label, data in measured.items():
        per = data["per_stage_s"]
        added = median(per) - base_median
        cpu = data["runner_cpu_s"] / args.stages * 1000
        cluster_cpu = f"{data['cluster_cpu_s'] / args.stages * 1000:.1f}" if target.pid is not None else "-"
        rows.append(
            [
                label,
                f"{median(per) * 1000:.1f}",
                f"{max(per) * 1000:.1f}",
                f"{added * 1000:.1f}",
                ratio(median(per), base_median),
                f"{cpu:.1f}",
                cluster_cpu,
            ]
        )
    print(f"{args.stages} stages of `true` each, one pod per strategy, on the {target.name}; times per stage")
    print(
        table(
            [
                "strategy",
                "median ms",
                "max ms",
                "added ms (vs sh)",
                "ratio to sh",
                "runner CPU ms/stage",
                "cluster CPU ms/stage",
            ],
            rows,
        )
    )
    goal = median(measured["attach/file"]["per_stage_s"]) - base_median
    print(
        f"goal: attach adds <= 20 ms per stage: {'met' if goal <= 0.020 else 'MISSED'} ({goal * 1000:.1f} ms)"
    )
    path = write_json(
        "stage_overhead",
        {"stages": args.stages, "target": target.name, "sh_per_stage_s": baseline, "runner": measured},
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
