"""Artifacts: what uploading a large artifact costs the runner's memory (goal: 1 GiB -> < 50 MB).

One job writes `--mib` MiB of random bytes and uploads them as its artifact through the helper's
upload stage, to a stand-in for GitLab's artifacts endpoint running in its own process (it streams
the multipart body to nowhere, counting bytes). The baseline is the same job without artifacts, in
the same process. The runner's RSS is sampled every 50 ms while each job runs.

    .venv/bin/python bench/artifacts.py [--mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ClusterProcess, NullSink, job_request, open_client, proc_sample, table, write_json

from kuberunner.executor.job import GitSource, JobRequest, run_job
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.shell.transfers import Transfers, Upload
from kuberunner.trace import Trace

RECEIVER = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    async def upload(request):
        size = 0
        async for part in await request.multipart():
            while chunk := await part.read_chunk(1 << 20):
                size += len(chunk)
        print(size, flush=True)
        return web.json_response({"id": 1}, status=201)

    app = web.Application(client_max_size=1 << 40)
    app.router.add_post("/api/v4/jobs/{id}/artifacts", upload)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
    """
)


async def run_sampled(request: JobRequest, settings: ExecutorSettings, kubeconfig: Path) -> dict[str, Any]:
    client = await open_client(kubeconfig)
    try:
        before = proc_sample().rss_kb
        peak = before
        trace = Trace(color=False)
        trace.add_sink(NullSink())
        job = asyncio.ensure_future(
            run_job(request=request, client=client, settings=settings, trace=trace, cancel=asyncio.Event())
        )
        start = time.monotonic()
        while not job.done():
            peak = max(peak, proc_sample().rss_kb)
            await asyncio.sleep(0.05)
        result = job.result()
        return {
            "result": type(result).__name__,
            "seconds": time.monotonic() - start,
            "growth_kb": peak - before,
        }
    finally:
        await client.close()


async def measure(mib: int, port: int, kubeconfig: Path) -> dict[str, dict[str, Any]]:
    settings = ExecutorSettings()
    base = dataclasses.replace(
        job_request("artifacts", [f"head -c {mib}M /dev/urandom > big.bin"]),
        git=GitSource(repo_url="", sha="", ref="", strategy="none"),
    )
    transfers = Transfers(
        api_url=f"http://127.0.0.1:{port}",
        job_id=1,
        job_token="bench-token",
        uploads=(Upload(name="big", paths=("big.bin",), artifact_format="zip"),),
    )
    results = {}
    for name, request in (
        ("no artifacts", base),
        (f"{mib} MiB artifact", dataclasses.replace(base, transfers=transfers)),
    ):
        results[name] = await run_sampled(request, settings, kubeconfig)
    return results


def main(mib: int) -> None:
    port = 18000 + (int(time.time()) % 1000)
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        with ClusterProcess() as cluster:
            results = asyncio.run(measure(mib, port, cluster.kubeconfig))
        receiver.terminate()
        assert receiver.stdout is not None
        received = receiver.stdout.read().split()
    finally:
        receiver.kill()
        receiver.wait()
    rows = [
        (name, r["result"], f"{r['seconds']:.1f}", f"{r['growth_kb'] / 1024:.1f}")
        for name, r in results.items()
    ]
    print(table(("job", "result", "seconds", "runner RSS growth (MiB)"), rows))
    print(f"bytes the stand-in for GitLab received: {received[-1] if received else 'none'}")
    write_json("artifacts", {"mib": mib, "runs": results, "received": received})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    main(parser.parse_args().mib)
