"""A trace sink that fails (a full disk, a FIFO whose reader left, stdout closed by `| head`): issue 10.

Whatever the sink, `kuberunner exec` stops the job at once as a system failure (exit 3), says so in
one line on stderr naming the sink, deletes the pod and prints no traceback.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

from .execution import BIN, Cluster, Running, Target, pipeline


def kubectl_names(cluster: Cluster, kind: str) -> str:
    done = subprocess.run(
        [str(BIN.parent / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "get", kind, "-o", "name"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def job_processes(marker: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()


def assert_one_line_naming(stderr: str, sink: str, error: str) -> None:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert stderr.splitlines() == [f"kuberunner: writing the job log failed: {sink}: {error}"], stderr


def test_a_trace_file_on_a_full_disk_fails_the_job_at_once(cluster: Cluster, tmp_path: Path) -> None:
    job = Running(
        cluster, tmp_path, pipeline(script=["echo started", "sleep 4271"]), "--trace-file", "/dev/full"
    )
    started = time.monotonic()
    done = job.finish(timeout=60)
    assert time.monotonic() - started < 20
    assert done.status == 3, done.stdout
    assert_one_line_naming(done.stderr, "trace file /dev/full", "No space left on device")
    assert done.stdout.endswith(
        b"ERROR: Job failed (system failure): "
        b"writing the job log failed: trace file /dev/full: No space left on device\n"
    )
    assert job_processes("sleep 4271") == []
    assert kubectl_names(cluster, "pods") == ""
    assert kubectl_names(cluster, "secrets") == ""


def read_until(fd: int, needle: bytes, *, within: float) -> bytes:
    """What the FIFO gave until `needle` showed up (waiting on the descriptor, not sleeping)."""
    deadline = time.monotonic() + within
    data = b""
    while needle not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, data
        readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if readable:
            data += os.read(fd, 65536)
    return data


def trace_fifo_closed_mid_stage(
    cluster: Cluster, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> None:
    """The trace file is a FIFO whose reader leaves once the job has started: the job must stop."""
    fifo = tmp_path.parent / f"{tmp_path.name}.fifo"
    os.mkfifo(fifo)
    # Opened for reading first, without waiting for a writer, so the runner's open does not block.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    script = ["echo started", "while :; do echo tick; sleep 0.2; done & sleep 4272"]
    job = Running(cluster, tmp_path, pipeline(script=script), "--trace-file", str(fifo), *args, env=env)
    try:
        read_until(reader, b"started\n", within=60)
    finally:
        os.close(reader)
    left = time.monotonic()
    done = job.finish(timeout=60)
    assert time.monotonic() - left < 15
    assert done.status == 3, done.stdout
    assert_one_line_naming(done.stderr, f"trace file {fifo}", "Broken pipe")
    assert b"started\n" in done.stdout
    assert done.stdout.endswith(
        f"ERROR: Job failed (system failure): writing the job log failed: trace file {fifo}: "
        "Broken pipe\n".encode()
    )
    assert job_processes("sleep 4272") == []
    assert kubectl_names(cluster, "pods") == ""


def test_a_trace_file_failing_mid_stage_stops_the_job_and_deletes_the_pod(
    target: Target, tmp_path: Path
) -> None:
    trace_fifo_closed_mid_stage(target.cluster, tmp_path, *target.args)


def test_a_trace_file_failing_mid_stage_with_legacy_exec(cluster: Cluster, tmp_path: Path) -> None:
    trace_fifo_closed_mid_stage(
        cluster, tmp_path, env={"FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY": "true"}
    )


def test_stdout_closed_by_head_stops_the_job_as_a_system_failure(cluster: Cluster, tmp_path: Path) -> None:
    """`kuberunner exec | head -c 10`: stdout's reader leaves after 10 bytes; the job stops like a
    CLI whose output is gone (exit 3), the trace file still gets the whole log."""
    (tmp_path / ".gitlab-ci.yml").write_text(
        pipeline(script=["echo started", "while :; do echo tick; sleep 0.2; done & sleep 4273"])
    )
    trace_file = tmp_path.parent / f"{tmp_path.name}.trace"
    process = subprocess.Popen(
        [
            str(BIN),
            "exec",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "-f",
            str(tmp_path / ".gitlab-ci.yml"),
            "--trace-file",
            str(trace_file),
            "--no-color",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        head = process.stdout.read(10)
        process.stdout.close()
        status = process.wait(timeout=60)
        stderr = process.stderr.read().decode(errors="replace")
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    assert head == b"Running wi"
    assert status == 3
    assert_one_line_naming(stderr, "stdout", "Broken pipe")
    assert trace_file.read_bytes().endswith(
        b"ERROR: Job failed (system failure): writing the job log failed: stdout: Broken pipe\n"
    )
    assert job_processes("sleep 4273") == []
    assert kubectl_names(cluster, "pods") == ""
