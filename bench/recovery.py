"""Recovery: how soon output flows again after the API connection is reset or black-holed.

The runner (this process) talks to the `kuberunner cluster` process through a FaultProxy running
on its own thread. The job prints `<sequence> <ns timestamp>` every 50 ms; a trace sink records,
on the runner side, when each line arrives. Faults, one at a time, while the job runs:

- `reset_all()`: every connection gets an RST. Measured from the reset;
- a 5 s black hole, then held bytes delivered (`deliver`) or every connection reset (`reset`).
  Measured from the end of the hole;
- `silence_all()`: every open connection goes silent for good (bytes dropped both ways, nothing
  closed, both kernels still ACK: a middlebox whose far side died, which TCP keepalive cannot see).
  Measured from the silence: this row is "silent connection →
  output flows again", noticed by the runner's own liveness checks (heartbeat, idle bound, GETs).

"flowing" is the first job line to arrive after that moment; "caught up" is the arrival of the
first line the job printed after it. The baseline is the same two measures at moments with no
fault, in the same job. Every line must arrive exactly once, in order. Goals: <= 1 s median
after a reset, <= 2 s after a black hole, <= 10 s after a silence.

    .venv/bin/python bench/recovery.py [--resets 5] [--holes 2] [--silences 2] [--transport file|kubelet]...
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ClusterProcess, job_request, median, open_client, ratio, table, write_json

from kuberunner.executor.job import run_job
from kuberunner.executor.results import Success
from kuberunner.executor.settings import ExecutorSettings
from kuberunner.faultproxy import FaultProxy, rewrite_kubeconfig
from kuberunner.kube.client import KubeClient
from kuberunner.trace import Trace

T = TypeVar("T")
HOLE_SECONDS = 5.0
GAP_SECONDS = 3.0
SILENCE_ALLOWANCE = 8.0
"""How long after a silence before the next fault: the runner needs up to ~6 s to notice it."""
SILENT = "silent connection"


def job_script(seconds: float) -> str:
    return (
        f"end=$(( $(date +%s) + {int(seconds)} )); n=0; "
        'while [ "$(date +%s)" -lt "$end" ]; do n=$((n + 1)); echo "tick $n $(date +%s%N)"; sleep 0.05; done'
    )


class ArrivalSink:
    """Records (arrival time, sequence, emit time) for every complete `tick` line of the job."""

    def __init__(self) -> None:
        self._partial = b""
        self.arrivals: list[tuple[float, int, float]] = []
        self.first = asyncio.Event()

    def write(self, data: bytes) -> None:
        now = time.time()
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-200:]
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"tick" and parts[1].isdigit() and parts[2].isdigit():
                self.arrivals.append((now, int(parts[1]), int(parts[2]) / 1e9))
                self.first.set()

    def close(self) -> None:
        pass

    def after(self, moment: float) -> tuple[float, float]:
        """(first arrival after `moment`, arrival of the first line printed after it), as delays."""
        times = [a for a, _, _ in self.arrivals]
        flowing = times[bisect.bisect_right(times, moment)] - moment
        caught = min(a for a, _, emitted in self.arrivals if emitted > moment) - moment
        return flowing, caught

    def exactly_once(self) -> bool:
        return [seq for _, seq, _ in self.arrivals] == list(range(1, len(self.arrivals) + 1))


class ProxyThread:
    """The fault proxy on its own event loop, so relaying does not compete with the runner's loop."""

    def __init__(self, kubeconfig: Path, out: Path) -> None:
        server = next(line for line in kubeconfig.read_text().splitlines() if "server:" in line)
        port = int(server.rsplit(":", 1)[1].strip().strip("\"'/"))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self.proxy = FaultProxy(target_host="127.0.0.1", target_port=port)
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(timeout=10)
        rewrite_kubeconfig(kubeconfig, out, server=self.proxy.address)

    async def call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self._loop))

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def faults(
    proxy: ProxyThread, sink: ArrivalSink, resets: int, holes: int, silences: int
) -> dict[str, list[float]]:
    """Injects the faults; returns the moments to measure from, per kind (and quiet moments)."""
    await asyncio.wait_for(sink.first.wait(), 120)
    moments: dict[str, list[float]] = {
        "no fault (baseline)": [],
        "reset": [],
        "black hole, deliver": [],
        "black hole, reset": [],
        SILENT: [],
    }
    for _ in range(resets):
        await asyncio.sleep(GAP_SECONDS * random.uniform(0.8, 1.2))
        moments["no fault (baseline)"].append(time.time())
        await asyncio.sleep(GAP_SECONDS / 2)
        moments["reset"].append(time.time())
        await proxy.call(proxy.proxy.reset_all)
    for then in ("deliver", "reset"):
        for _ in range(holes):
            await asyncio.sleep(GAP_SECONDS * random.uniform(0.8, 1.2))
            await proxy.call(lambda then=then: proxy.proxy.black_hole(HOLE_SECONDS, then=then))  # type: ignore[misc]
            moments[f"black hole, {then}"].append(time.time() + HOLE_SECONDS)
            await asyncio.sleep(HOLE_SECONDS)
    for _ in range(silences):
        await asyncio.sleep(GAP_SECONDS * random.uniform(0.8, 1.2))
        moments[SILENT].append(time.time())
        await proxy.call(proxy.proxy.silence_all)
        await asyncio.sleep(SILENCE_ALLOWANCE)
    await asyncio.sleep(GAP_SECONDS)
    return moments


async def one_transport(
    kubeconfig: Path, proxy: ProxyThread, transport: str, resets: int, holes: int, silences: int
) -> dict[str, Any]:
    seconds = (
        10
        + resets * GAP_SECONDS * 1.7
        + 2 * holes * (GAP_SECONDS * 1.2 + HOLE_SECONDS)
        + silences * (GAP_SECONDS * 1.2 + SILENCE_ALLOWANCE)
        + GAP_SECONDS
    )
    client: KubeClient = await open_client(kubeconfig)
    sink = ArrivalSink()
    trace = Trace()
    trace.add_sink(sink)
    try:
        job = asyncio.ensure_future(
            run_job(
                request=job_request("recovery", [job_script(seconds)], timeout=seconds + 120),
                client=client,
                settings=ExecutorSettings(log_transport=transport),  # type: ignore[arg-type]
                trace=trace,
                cancel=asyncio.Event(),
            )
        )
        moments = await faults(proxy, sink, resets, holes, silences)
        result = await job
    finally:
        trace.close()
        await client.close()
    delays = {kind: [sink.after(m) for m in when] for kind, when in moments.items()}
    return {
        "result": str(result),
        "success": isinstance(result, Success),
        "lines": len(sink.arrivals),
        "exactly_once": sink.exactly_once(),
        "flowing_s": {kind: [d[0] for d in found] for kind, found in delays.items()},
        "caught_up_s": {kind: [d[1] for d in found] for kind, found in delays.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resets", type=int, default=5)
    parser.add_argument("--holes", type=int, default=2, help="black holes of each kind")
    parser.add_argument("--silences", type=int, default=2, help="times every connection goes silent")
    parser.add_argument("--transport", action="append", choices=("file", "kubelet"))
    args = parser.parse_args()
    transports = args.transport or ["file", "kubelet"]

    found: dict[str, Any] = {}
    with ClusterProcess() as cluster, tempfile.TemporaryDirectory(prefix="kr-bench-rec-") as tmp:
        proxy = ProxyThread(cluster.kubeconfig, Path(tmp) / "kubeconfig")
        try:
            for transport in transports:
                found[transport] = asyncio.run(
                    one_transport(
                        Path(tmp) / "kubeconfig", proxy, transport, args.resets, args.holes, args.silences
                    )
                )
                print(
                    f"  {transport}: {found[transport]['result']}, {found[transport]['lines']} lines",
                    flush=True,
                )
        finally:
            proxy.close()

    rows: list[list[object]] = []
    for transport, data in found.items():
        base = median(data["flowing_s"]["no fault (baseline)"])
        for kind, flowing in data["flowing_s"].items():
            if not flowing:
                continue
            caught = data["caught_up_s"][kind]
            rows.append(
                [
                    transport,
                    kind,
                    len(flowing),
                    f"{median(flowing) * 1000:.0f}",
                    f"{max(flowing) * 1000:.0f}",
                    f"{median(caught) * 1000:.0f}",
                    ratio(median(flowing), base),
                    "yes" if data["exactly_once"] and data["success"] else f"NO ({data['result']})",
                ]
            )
    print(
        "\nms from the reset / the end of the black hole / the silence; job prints a line every 50 ms;"
        f" the {SILENT!r} rows are: silent connection → output flows again"
    )
    print(
        table(
            [
                "transport",
                "fault",
                "n",
                "flowing median",
                "flowing max",
                "caught up median",
                "flowing vs baseline",
                "every line once, job ok",
            ],
            rows,
        )
    )
    for transport, data in found.items():
        reset = median(data["flowing_s"]["reset"])
        hole = max(
            median(data["flowing_s"]["black hole, deliver"]), median(data["flowing_s"]["black hole, reset"])
        )
        silent = data["flowing_s"][SILENT]
        quiet = max(silent) if silent else 0.0
        verdict = "met" if reset <= 1 and hole <= 2 and quiet <= 10 else "MISSED"
        print(
            f"goal ({transport}): <= 1 s after a reset, <= 2 s after a black hole, <= 10 s after a"
            f" silence: {verdict} ({reset:.2f} s, {hole:.2f} s, {quiet:.2f} s)"
        )
    print(f"results: {write_json('recovery', {'results': found})}")


if __name__ == "__main__":
    main()
