"""Adoption: how soon a `kuberunner run` started again after `kill -9` has the job's output flowing.

A job prints `tick <n> <ns timestamp>` every 50 ms. The runner (a `kuberunner run` subprocess,
against the fake GitLab of the tests, trace interval 0.2 s) is SIGKILLed once GitLab holds a few
ticks, stays down 1 s, and is started again on the same config.toml. Measured from the restart:

- "status": the restarted runner's first PUT for the job (it asks GitLab where the job stands);
- "first new byte": the first PATCH GitLab accepts with bytes it did not hold (after the 416 re-sync);
- "flowing": GitLab holds the tick the job printed at the moment of the restart (every tick printed
  while the runner was down is then there too), i.e. output is flowing again end to end.

Baseline, same process: a fresh `kuberunner run` from its start to its first job request (what a
process start costs anyway). Each round checks every tick arrived exactly once, in order. Goal:
"flowing" <= 2 s.

    .venv/bin/python bench/adoption.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

from common import ClusterProcess, median, table, write_json  # noqa: E402
from gitlab.fake_gitlab import FakeGitLab, FakeJob  # noqa: E402 - the tests' fake GitLab
from gitlab.git_http import make_repository  # noqa: E402

BIN = Path(sys.executable).parent / "kuberunner"
TICK = re.compile(rb"^tick ([0-9]+) ([0-9]+)$", re.MULTILINE)
SCRIPT = 'n=0; while [ $n -lt 400 ]; do n=$((n + 1)); echo "tick $n $(date +%s%N)"; sleep 0.05; done'


def write_config(path: Path, url: str, token: str) -> Path:
    path.write_text(
        f'concurrent = 4\ncheck_interval = 1\n\n[[runners]]\n  name = "bench"\n  url = "{url}"\n'
        f'  token = "{token}"\n  executor = "kubernetes"\n  [runners.kubernetes]\n    namespace = "default"\n'
    )
    return path


def start_runner(config: Path, kubeconfig: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(BIN), "-v", "run", "-c", str(config), "--kubeconfig", str(kubeconfig)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def until(condition: object, *, within: float, what: str) -> float:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic()


def first_request(gitlab: FakeGitLab, since: float, method: str, path: str, status: int) -> float | None:
    for at, m, p, s in gitlab.requests:
        if at >= since and m == method and p == path and s == status:
            return at
    return None


async def one_round(gitlab: FakeGitLab, kubeconfig: Path, work: Path) -> dict[str, float]:
    runner = gitlab.add_runner()
    config = write_config(work / "config.toml", gitlab.base_url, runner.token)
    log = work / "runner.log"
    started = time.monotonic()
    process = start_runner(config, kubeconfig, log)
    job: FakeJob = gitlab.enqueue({"steps": [{"name": "script", "script": [SCRIPT], "timeout": 3600}]})
    path = f"/api/v4/jobs/{job.id}"
    await until(
        lambda: any(at >= started and p == "/api/v4/jobs/request" for at, _, p, _ in gitlab.requests),
        within=60,
        what="the first job request",
    )
    asked = min(at for at, _, p, _ in gitlab.requests if at >= started and p == "/api/v4/jobs/request")
    await until(lambda: b"tick 20 " in job.text, within=60, what="tick 20")
    process.kill()
    process.wait()
    await asyncio.sleep(1.0)
    restart = time.monotonic()
    restart_ns = time.time_ns()
    process = start_runner(config, kubeconfig, log)
    try:

        def caught_up() -> bool:
            return any(int(ts) >= restart_ns for _, ts in TICK.findall(job.text))

        flowing = await until(caught_up, within=60, what="output flowing again")
        status = first_request(gitlab, restart, "PUT", path, 200)
        new_byte = first_request(gitlab, restart, "PATCH", path + "/trace", 202)
        await until(job.finished.is_set, within=120, what="the job to finish")
    finally:
        process.terminate()
        process.wait(timeout=60)
    ticks = [int(n) for n, _ in TICK.findall(job.text)]
    if ticks != list(range(1, 401)) or job.state != "success" or not job.checksum_ok:
        raise RuntimeError(f"round broke the trace: state {job.state}, {len(ticks)} ticks; see {log}")
    return {
        "baseline_start_to_request": asked - started,
        "status": (status or float("nan")) - restart,
        "first_new_byte": (new_byte or float("nan")) - restart,
        "flowing": flowing - restart,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kr-bench-adoption-") as tmp, ClusterProcess() as cluster:
        repos, _ = make_repository(Path(tmp) / "git")
        gitlab = FakeGitLab(repos, trace_interval=0.2)
        await gitlab.start()
        try:
            rounds = []
            for index in range(args.rounds):
                work = Path(tmp) / f"round{index}"
                work.mkdir()
                rounds.append(await one_round(gitlab, cluster.kubeconfig, work))
        finally:
            await gitlab.close()
    keys = ["baseline_start_to_request", "status", "first_new_byte", "flowing"]
    rows = [
        [key, *(f"{r[key]:.2f}" for r in rounds), f"{median([r[key] for r in rounds]):.2f}"] for key in keys
    ]
    print(
        table(
            ["seconds after start/restart", *(f"round {i + 1}" for i in range(len(rounds))), "median"], rows
        )
    )
    print(f"\ngoal: flowing <= 2 s; median {median([r['flowing'] for r in rounds]):.2f} s")
    write_json("adoption", {"rounds": rounds})


if __name__ == "__main__":
    asyncio.run(main())
