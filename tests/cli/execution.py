"""Running `kuberunner exec` in a subprocess, as a user does, and reading what it left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent / "kuberunner"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    state_dir: Path
    process: subprocess.Popen[bytes]


@dataclass(frozen=True)
class Done:
    status: int
    stdout: bytes
    stderr: str
    trace: bytes


def run_exec(
    cluster: Cluster,
    workdir: Path,
    pipeline: str,
    *args: str,
    timeout: float = 120,
) -> Done:
    """Write the pipeline into workdir and run `kuberunner exec` on it."""
    (workdir / ".gitlab-ci.yml").write_text(pipeline)
    trace = workdir.parent / f"{workdir.name}.trace"
    done = subprocess.run(
        [str(BIN), "exec", "--kubeconfig", str(cluster.kubeconfig), "-f", str(workdir / ".gitlab-ci.yml"),
         "--trace-file", str(trace), "--no-color", *args],
        capture_output=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
    )
    return Done(done.returncode, done.stdout, done.stderr.decode(errors="replace"),
                trace.read_bytes() if trace.exists() else b"")


def job_bytes(trace: bytes) -> bytes:
    """The job's own bytes: what lies between the step_script start line and the next runner line."""
    start = trace.index(b'Executing "step_script" stage of the job script\n') + len(
        b'Executing "step_script" stage of the job script\n'
    )
    return trace[start:]


def pipeline(**keywords: object) -> str:
    """One job named `job`, written as JSON (valid YAML) so no shell text needs YAML quoting."""
    return json.dumps({"job": keywords})
