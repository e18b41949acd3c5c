"""How `kuberunner exec` ends: timeout, cancel and bad input (issue 3)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from .execution import BIN, Cluster, Running, Target, pipeline, run_exec


def job_processes(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return found.stdout.split()


def test_timeout_kills_the_tree_runs_after_script_and_exits_4(target: Target, tmp_path: Path) -> None:
    script = ["sh -c 'sleep 4243 & sleep 4244' & sleep 4242"]
    started = time.monotonic()
    done = run_exec(
        target.cluster,
        tmp_path,
        pipeline(script=script, after_script=["echo cleaning up"]),
        "--timeout",
        "3",
        *target.args,
    )
    took = time.monotonic() - started
    assert done.status == 4, done.trace
    assert took < 20
    assert b"cleaning up\n" in done.trace
    assert done.trace.endswith(b"ERROR: Job failed: execution took longer than 3s\n")
    assert job_processes("sleep 424[234]") == []


def test_sigterm_cancels_after_after_script_and_deletes_the_pod(cluster: Cluster, tmp_path: Path) -> None:
    job = Running(
        cluster, tmp_path, pipeline(script=["echo started", "sleep 4250"], after_script=["echo after cancel"])
    )
    job.wait_for(b"started\n")
    job.process.send_signal(signal.SIGTERM)
    done = job.finish(timeout=30)
    assert done.status == 130
    text = done.trace
    assert b"after cancel\n" in text
    assert text.endswith(b"ERROR: Job failed: canceled\n")
    assert job_processes("sleep 4250") == []
    pods = subprocess.run(
        [str(BIN.parent / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "get", "pods", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert pods.returncode == 0 and pods.stdout == "", pods.stdout + pods.stderr


@pytest.mark.parametrize(
    ("text", "args", "expected"),
    [
        ("job:\n  script:\n    - echo [\n  bad: [\n", (), ".gitlab-ci.yml:4: "),
        ("job:\n  script: 42\n", (), ".gitlab-ci.yml:2: "),
        ("job:\n  script: [echo]\n", ("nope",), "no job named 'nope'"),
    ],
    ids=["malformed-yaml", "script-is-a-number", "unknown-job"],
)
def test_bad_pipeline_is_one_line_and_exit_2(
    cluster: Cluster, tmp_path: Path, text: str, args: tuple[str, ...], expected: str
) -> None:
    done = run_exec(cluster, tmp_path, text, *args)
    assert done.status == 2
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_bad_config_toml_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text(pipeline(script=["true"]))
    (tmp_path / "config.toml").write_text('[[runners]]\nname = "x"\n[runners.kubernetes]\nhost = 5\n')
    done = subprocess.run(
        [str(BIN), "exec", "-f", str(tmp_path / ".gitlab-ci.yml"), "-c", str(tmp_path / "config.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "config.toml" in done.stderr and "host" in done.stderr, (
        done.stderr
    )


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN), "exec", "-f", str(tmp_path / "absent.yml")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "absent.yml" in done.stderr
