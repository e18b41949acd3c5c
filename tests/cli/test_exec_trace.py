"""A trustworthy trace: masking, output limits, and the kubelet transport's exact resume (issue 5)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .execution import BIN, Cluster, Running, Target, pipeline, run_exec
from .faults import ProxyThread

SECRET = "s3cr3t-0123456789abcdefghijklmnopqrstuvw"  # 40 characters


def test_masked_value_never_reaches_any_output(target: Target, tmp_path: Path) -> None:
    assert len(SECRET) == 40
    script = [
        'echo "whole: $SECRET"',
        'printf "split: %s" "${SECRET%????????????????????}"; sleep 1; '
        'printf "%s\\n" "${SECRET#????????????????????}"',
        'printf "partial line: %s" "$SECRET"',
    ]
    done = run_exec(
        target.cluster,
        tmp_path,
        pipeline(script=script, after_script=['echo "after: $SECRET"']),
        "--masked-var",
        f"SECRET={SECRET}",
        *target.args,
    )
    assert done.status == 0, done.trace[-2000:]
    for output in (done.trace, done.stdout, done.stderr.encode()):
        assert SECRET.encode() not in output
        assert SECRET[:20].encode() not in output or b"[MASKED]" in output
    assert b"whole: [MASKED]\n" in done.trace
    assert b"split: [MASKED]\n" in done.trace
    assert b"partial line: [MASKED]" in done.trace
    assert b"after: [MASKED]\n" in done.trace


def test_output_limit_cuts_the_trace_not_the_job(cluster: Cluster, tmp_path: Path) -> None:
    config = tmp_path.parent / f"{tmp_path.name}.toml"
    config.write_text('[[runners]]\nname = "limit"\noutput_limit = 1024\n')
    script = ["head -c 10000000 /dev/zero | tr '\\0' x", "echo after-the-flood", "exit 5"]
    done = run_exec(cluster, tmp_path, pipeline(script=script), "-c", str(config))
    assert done.status == 1
    assert b"ERROR: Job failed: exit code 5\n" in done.trace
    assert 1024 * 1024 <= len(done.trace) < 1024 * 1024 + 4096
    assert b"Job's log exceeded limit of 1048576 bytes." in done.trace
    assert b"after-the-flood" not in done.trace


def _peak_rss_mib(cluster: Cluster, workdir: Path, megabytes: int) -> float:
    """Peak RSS of a `kuberunner exec` whose job prints `megabytes` MB (with a 1 MiB output limit),
    as the kernel reports it for that process alone (wait4)."""
    workdir.mkdir()
    (workdir / ".gitlab-ci.yml").write_text(
        pipeline(script=[f"head -c {megabytes}000000 /dev/zero | tr '\\0' x"])
    )
    config = workdir / "config.toml"
    config.write_text('[[runners]]\nname = "rss"\noutput_limit = 1024\n')
    proc = subprocess.Popen(
        [
            str(BIN),
            "exec",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "-f",
            str(workdir / ".gitlab-ci.yml"),
            "-c",
            str(config),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    return usage.ru_maxrss / 1024


def test_runner_memory_does_not_grow_with_job_output(cluster: Cluster, tmp_path: Path) -> None:
    small = _peak_rss_mib(cluster, tmp_path / "small", 5)
    large = _peak_rss_mib(cluster, tmp_path / "large", 60)
    assert large - small < 15, f"peak RSS {small:.0f} MiB for 5 MB, {large:.0f} MiB for 60 MB"


def test_kubelet_transport_delivers_identical_lines_exactly_once_through_resets(
    cluster_without_exec: Cluster, tmp_path: Path
) -> None:
    out = tmp_path.parent / f"{tmp_path.name}.kubeconfig"
    proxy = ProxyThread(cluster_without_exec.kubeconfig, out)
    try:
        proxied = Cluster(out, cluster_without_exec.state_dir, cluster_without_exec.process)
        script = [
            "for s in 1 2 3 4 5; do "
            "awk 'BEGIN { for (i = 0; i < 3000; i++) print \"same-line\" }'; sleep 1; done",
            "echo finished",
        ]
        job = Running(proxied, tmp_path, pipeline(script=script), "--log-transport", "kubelet")
        job.wait_for(b"same-line\n")
        proxy.call(lambda: proxy.proxy.schedule_resets(0.3))
        done = job.finish(timeout=120)
        resets = proxy.call(lambda: proxy.proxy.stats.resets)
    finally:
        proxy.close()
    assert done.status == 0, done.trace[-2000:]
    assert done.trace.count(b"same-line\n") == 15000
    assert resets > 0
