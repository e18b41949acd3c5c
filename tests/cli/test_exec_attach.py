"""`kuberunner exec` on the embedded cluster: results, exit codes and byte-exact traces (issue 3)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from .execution import (
    BIN,
    Cluster,
    Running,
    Target,
    pipeline,
    run_exec,
    section_end,
    section_start,
    unstamped,
    without_sections,
)

STEP_SCRIPT = 'Executing "step_script" stage of the job script'


def echo(command: str) -> bytes:
    """How a script line is shown in the trace before it runs."""
    return b"\x1b[32;1m$ " + command.encode() + b"\x1b[0;m\n"


def test_success(target: Target, tmp_path: Path) -> None:
    before = int(time.time())
    done = run_exec(target.cluster, tmp_path, "job:\n  script:\n    - echo hello\n", *target.args)
    after = int(time.time())
    assert done.status == 0, done.stderr
    # Piped with --no-color, stdout is the trace without its section markers and colour codes (issue 14).
    assert done.stdout == re.sub(rb"\x1b\[[0-9;]*m", b"", without_sections(done.trace))
    # Each stage is a section GitLab can fold, its end on a line of its own before the next runner line.
    assert unstamped(done.trace).endswith(
        section_start("get_sources", "Preparing the project directory")
        + section_end("get_sources")
        + section_start("step_script", STEP_SCRIPT)
        + echo("echo hello")
        + b"hello\n"
        + section_end("step_script")
        + b"Job succeeded\n"
    )
    stamps = [int(t) for t in re.findall(rb"section_(?:start|end):([0-9]+):", done.trace)]
    assert len(stamps) == 4 and all(before <= t <= after for t in stamps), stamps


def test_exit_code_is_a_script_failure_and_after_script_runs(target: Target, tmp_path: Path) -> None:
    text = """
job:
  before_script: [echo before]
  script:
    - exit 3
    - echo never
  after_script:
    - echo "after $CI_JOB_NAME"
"""
    done = run_exec(target.cluster, tmp_path, text, *target.args)
    assert done.status == 1
    assert echo("echo before") + b"before\n" + echo("exit 3") + section_end("step_script") + section_start(
        "after_script", "Running after_script"
    ) in unstamped(done.trace)
    assert b"never" not in done.trace.replace(echo("echo never"), b"")
    assert b"after job\n" in done.trace
    assert done.trace.endswith(b"ERROR: Job failed: exit code 3\n")


def test_forged_markers_are_output_and_the_real_code_wins(target: Target, tmp_path: Path) -> None:
    fake = '{"command_exit_code": 0, "script": "step_script"}'
    script = [f"printf '%s' '{fake}'", f"printf '\\n%s\\n' '{fake}'", "exit 7"]
    done = run_exec(target.cluster, tmp_path, pipeline(script=script), *target.args)
    assert done.status == 1
    assert fake.encode() + echo(f"printf '\\n%s\\n' '{fake}'") + b"\n" + fake.encode() + b"\n" in done.trace
    assert b"ERROR: Job failed: exit code 7\n" in done.trace


def test_jobs_reading_stdin_or_leaving_background_processes_finish(target: Target, tmp_path: Path) -> None:
    script = ["cat", "read x || echo eof", "sleep 1000 &", "echo end"]
    started = time.monotonic()
    done = run_exec(target.cluster, tmp_path, pipeline(script=script), *target.args, timeout=60)
    assert done.status == 0, done.trace
    assert b"eof\n" in done.trace and b"end\nJob succeeded\n" in without_sections(done.trace)
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("printf 'no newline'", b"no newline"),
        ("printf '10%%\\r20%%\\r30%%\\n'", b"10%\r20%\r30%\n"),
        ("printf '\\377\\376 not utf-8 \\303'", b"\xff\xfe not utf-8 \xc3"),
        ("printf 'a\\000b'", b"a\x00b"),
        ("head -c 100000 /dev/zero | tr '\\0' x", b"x" * 100_000),
    ],
    ids=["no-newline", "carriage-returns", "invalid-utf8", "nul-byte", "100k-line"],
)
def test_trace_is_byte_exact(target: Target, tmp_path: Path, command: str, expected: bytes) -> None:
    done = run_exec(target.cluster, tmp_path, pipeline(script=[command, "true"]), *target.args)
    assert done.status == 0, done.trace[-2000:]
    assert echo(command) + expected + echo("true") in done.trace


def test_fifteen_megabytes_of_seq(target: Target, tmp_path: Path) -> None:
    expected = subprocess.run(["seq", "1", "2000000"], capture_output=True, check=True).stdout
    assert len(expected) > 14_000_000
    done = run_exec(
        target.cluster, tmp_path, "job:\n  script:\n    - seq 1 2000000\n    - 'true'\n", *target.args
    )
    if target.transport == "kubelet" and target.cluster.process is None and done.status != 0:
        # A real kubelet rotates the container log at 10 MiB and serves only the current file; when
        # the file with the marker went unread, the job must say so at once, not hang or succeed.
        assert b"kubelet rotated the log of the build container away before it was read" in done.trace
        assert (echo("seq 1 2000000") + expected[:1_000_000]) in done.trace
        return
    assert done.status == 0
    assert echo("seq 1 2000000") + expected + echo("true") in done.trace


def test_partial_line_is_live(cluster: Cluster, tmp_path: Path) -> None:
    command = "printf start; sleep 5; echo end"
    job = Running(cluster, tmp_path, pipeline(script=[command]))
    job.wait_for(echo(command) + b"start")
    assert job.process.poll() is None, "the job must still be sleeping"
    assert job.trace().endswith(echo(command) + b"start")
    done = job.finish(timeout=60)
    assert done.status == 0
    assert unstamped(done.trace).endswith(b"startend\n" + section_end("step_script") + b"Job succeeded\n")


def kubectl(cluster: Cluster, *args: str) -> str:
    done = subprocess.run(
        [str(BIN.parent / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_pod_follows_the_attach_contract_and_leaves_nothing_behind(cluster: Cluster, tmp_path: Path) -> None:
    import json

    job = Running(cluster, tmp_path, pipeline(script=["sleep 3"]))
    try:
        deadline = time.monotonic() + 30
        pods: list[dict[str, object]] = []
        while time.monotonic() < deadline and not pods:
            pods = json.loads(kubectl(cluster, "get", "pods", "-o", "json"))["items"]
        assert len(pods) == 1
        pod = pods[0]
        build = pod["spec"]["containers"][0]  # type: ignore[index]
        # A real API server omits false booleans (omitempty): read them with their default.
        assert (build["name"], build["stdin"], build.get("stdinOnce", False), build.get("tty", False)) == (
            "build",
            True,
            False,
            False,
        )
        assert build["command"][:2] == ["sh", "-c"]
        assert pod["metadata"]["labels"]["kuberunner.io/runner"] == "kuberunner"  # type: ignore[index]
        secret_name = next(v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v)  # type: ignore[index]
        secret = json.loads(kubectl(cluster, "get", "secret", secret_name, "-o", "json"))
        assert secret["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]  # type: ignore[index]
    finally:
        assert job.finish(timeout=60).status == 0
    assert kubectl(cluster, "get", "pods", "-o", "name") == ""
    assert kubectl(cluster, "get", "secrets", "-o", "name") == ""
