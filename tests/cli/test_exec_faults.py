"""Jobs survive dropped API connections; the legacy exec strategy fails honestly.

Issue 4: the seed's tcpkill test, and past it.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from pathlib import Path

from .execution import BIN, Cluster, Running, pipeline, without_sections
from .faults import ProxyThread

SEED_JOB = ['for i in $(seq 1 30); do echo "line $i"; sleep 0.1; done', 'echo "done"']


def numbered_lines(trace: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb"^line (\d+)$", trace, flags=re.M)]


def test_seed_job_survives_a_reset_every_half_second(
    proxied: tuple[Cluster, ProxyThread], tmp_path: Path
) -> None:
    cluster, proxy = proxied
    job = Running(cluster, tmp_path, pipeline(script=SEED_JOB))
    proxy.call(lambda: proxy.proxy.schedule_resets(0.5))
    done = job.finish()
    assert done.status == 0, done.trace[-2000:]
    assert numbered_lines(done.trace) == list(range(1, 31))
    assert b"done\nJob succeeded\n" in without_sections(done.trace)
    assert proxy.proxy.stats.resets > 0


def test_seed_job_ending_in_exit_1_fails_with_1_through_resets(
    proxied: tuple[Cluster, ProxyThread], tmp_path: Path
) -> None:
    cluster, proxy = proxied
    job = Running(cluster, tmp_path, pipeline(script=[*SEED_JOB, "exit 1"]))
    proxy.call(lambda: proxy.proxy.schedule_resets(0.5))
    done = job.finish()
    assert done.status == 1, done.trace[-2000:]
    assert numbered_lines(done.trace) == list(range(1, 31))
    assert done.trace.endswith(b"ERROR: Job failed: exit code 1\n")


def test_three_second_black_hole_loses_and_repeats_nothing(
    proxied: tuple[Cluster, ProxyThread], tmp_path: Path
) -> None:
    cluster, proxy = proxied
    job = Running(cluster, tmp_path, pipeline(script=SEED_JOB))
    job.wait_for(b"line 5\n")
    proxy.call(lambda: proxy.proxy.black_hole(3.0))
    done = job.finish()
    assert done.status == 0, done.trace[-2000:]
    assert numbered_lines(done.trace) == list(range(1, 31))


def test_legacy_exec_reports_a_lost_connection_as_system_failure(
    proxied: tuple[Cluster, ProxyThread], tmp_path: Path
) -> None:
    cluster, proxy = proxied
    job = Running(
        cluster,
        tmp_path,
        pipeline(script=SEED_JOB),
        env={"FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY": "true"},
    )
    job.wait_for(b"line 5\n")
    assert proxy.call(proxy.proxy.reset_all) > 0
    done = job.finish()
    assert done.status == 3, done.trace[-2000:]
    assert b"connection to the Kubernetes API was lost" in done.trace
    assert b"outcome is unknown" in done.trace
    assert b"Job succeeded" not in done.trace


def test_heavy_output_through_twenty_resets_is_byte_exact(
    proxied: tuple[Cluster, ProxyThread], tmp_path: Path
) -> None:
    cluster, proxy = proxied
    # About 1 MB/s for 10 s of numbered, varied lines; the job prints its own sha256 at the end.
    writer = (
        "i=0; while [ $i -lt 100 ]; do seq $((i*20000)) $((i*20000+14000)); i=$((i+1)); sleep 0.1; done"
        " | tee /tmp/kr-out | cat"
    )
    script = [writer, "sha256sum /tmp/kr-out"]
    job = Running(cluster, tmp_path, pipeline(script=script))
    job.wait_for(b"\n20000\n")
    proxy.call(lambda: proxy.proxy.schedule_resets(0.45, count=20))
    done = job.finish(timeout=180)
    assert done.status == 0, done.trace[-2000:]
    body = done.trace.split(b"tee /tmp/kr-out | cat\x1b[0;m\n", 1)[1].split(b"\x1b[32;1m$ sha256sum", 1)[0]
    reported = re.search(rb"^([0-9a-f]{64})  /tmp/kr-out$", done.trace, flags=re.M)
    assert reported is not None
    assert hashlib.sha256(body).hexdigest().encode() == reported.group(1)
    assert len(body) > 8_000_000
    assert proxy.proxy.stats.reset_rounds >= 20


def test_a_marker_written_during_a_black_hole_is_not_lost(
    proxied: tuple[Cluster, ProxyThread], tmp_path: Path
) -> None:
    cluster, proxy = proxied
    job = Running(cluster, tmp_path, pipeline(script=["echo started", "sleep 1", "echo end"]))
    job.wait_for(b"started\n")
    proxy.call(lambda: proxy.proxy.black_hole(4.0, then="reset"))
    done = job.finish()
    assert done.status == 0, done.trace[-2000:]
    assert done.trace.count(b"\nend\n") == 1
    assert without_sections(done.trace).endswith(b"end\nJob succeeded\n")


def test_api_unreachable_past_the_budget_is_a_system_failure(
    proxied: tuple[Cluster, ProxyThread], tmp_path: Path
) -> None:
    cluster, proxy = proxied
    config = tmp_path.parent / f"{tmp_path.name}.toml"
    config.write_text('[[runners]]\nname = "budget"\n[runners.kubernetes]\napi_unreachable_timeout = 2\n')
    job = Running(cluster, tmp_path, pipeline(script=["echo started", "sleep 30"]), "-c", str(config))
    job.wait_for(b"started\n")
    proxy.call(lambda: proxy.proxy.refuse(10))
    proxy.call(proxy.proxy.reset_all)
    started = time.monotonic()
    done = job.finish(timeout=60)
    assert time.monotonic() - started < 9.5
    assert done.status == 3, done.trace[-2000:]
    assert b"stayed unreachable" in done.trace
    # The runner could not delete its pod while the API was away; tidy up for the tests after this one.
    while proxy.call(lambda: proxy.proxy.refusing):
        time.sleep(0.1)
    deleted = subprocess.run(
        [
            str(BIN.parent / "kubectl"),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "delete",
            "pods",
            "-l",
            "kuberunner.io/runner=budget",
            "--request-timeout=30s",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert deleted.returncode == 0, deleted.stderr
