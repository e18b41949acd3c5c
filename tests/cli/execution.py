"""Running `kuberunner exec` in a subprocess, as a user does, and reading what it left."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent / "kuberunner"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    state_dir: Path
    process: subprocess.Popen[bytes] | None
    """The embedded cluster's process; None for a cluster the tests did not start (the real tier)."""


@dataclass(frozen=True)
class Target:
    """A cluster and the `kuberunner exec` arguments that go with it (e.g. a log transport)."""

    cluster: Cluster
    args: tuple[str, ...]

    @property
    def transport(self) -> str:
        return "kubelet" if "kubelet" in self.args else "file"


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
    env: dict[str, str] | None = None,
) -> Done:
    """Write the pipeline into workdir and run `kuberunner exec` on it."""
    return Running(cluster, workdir, pipeline, *args, env=env).finish(timeout=timeout)


class Running:
    """`kuberunner exec` started in the background, for tests that act while the job runs."""

    def __init__(
        self, cluster: Cluster, workdir: Path, pipeline: str, *args: str, env: dict[str, str] | None = None
    ) -> None:
        (workdir / ".gitlab-ci.yml").write_text(pipeline)
        self.trace_path = workdir.parent / f"{workdir.name}.trace"
        # Files, not pipes: nobody reads a pipe while the test waits, and a full pipe stalls the runner.
        self._stdout = (workdir.parent / f"{workdir.name}.stdout").open("w+b")
        self._stderr = (workdir.parent / f"{workdir.name}.stderr").open("w+b")
        self.process = subprocess.Popen(
            [
                str(BIN),
                "exec",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "-f",
                str(workdir / ".gitlab-ci.yml"),
                "--trace-file",
                str(self.trace_path),
                "--no-color",
                *args,
            ],
            stdout=self._stdout,
            stderr=self._stderr,
            env={**{k: v for k, v in os.environ.items() if k != "KUBECONFIG"}, **(env or {})},
        )

    def trace(self) -> bytes:
        return self.trace_path.read_bytes() if self.trace_path.exists() else b""

    def wait_for(self, needle: bytes, *, within: float = 60) -> None:
        """Until the trace holds `needle` (polling the file the runner writes)."""
        deadline = time.monotonic() + within
        while needle not in self.trace():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"{needle!r} not in the trace: {self.trace()[-3000:]!r}")
            time.sleep(0.02)

    def finish(self, *, timeout: float = 120) -> Done:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            _, stderr = self._outputs()
            raise AssertionError(
                f"kuberunner exec still running after {timeout} s; stderr: {stderr[-3000:]!r}; "
                f"trace tail: {self.trace()[-1000:]!r}"
            ) from None
        stdout, stderr = self._outputs()
        return Done(self.process.returncode, stdout, stderr, self.trace())

    def _outputs(self) -> tuple[bytes, str]:
        """What the runner printed; closes both files, so a failed test leaks none into the next."""
        outputs = []
        for file in (self._stdout, self._stderr):
            file.seek(0)
            outputs.append(file.read())
            file.close()
        return outputs[0], outputs[1].decode(errors="replace")


SECTION_MARKER = re.compile(rb"section_(?:start|end):[0-9]+:[A-Za-z0-9_.-]+\r\x1b\[0K")
_STAMP = re.compile(rb"(section_(?:start|end)):[0-9]+:")


def unstamped(trace: bytes) -> bytes:
    """The trace with every section marker's Unix time replaced by `T`, for exact comparisons."""
    return _STAMP.sub(rb"\1:T:", trace)


def without_sections(trace: bytes) -> bytes:
    """The trace as a terminal shows it: the section markers (which hide themselves there) removed."""
    return SECTION_MARKER.sub(b"", trace)


def section_start(name: str, header: str) -> bytes:
    """A section's opening as `unstamped` shows it (the header uncoloured, as with --no-color)."""
    return b"section_start:T:" + name.encode() + b"\r\x1b[0K" + header.encode() + b"\n"


def section_end(name: str) -> bytes:
    return b"section_end:T:" + name.encode() + b"\r\x1b[0K"


def job_bytes(trace: bytes) -> bytes:
    """The job's own bytes: what lies between the step_script header and the end of its section."""
    header = b'Executing "step_script" stage of the job script\n'
    start = trace.index(header) + len(header)
    return trace[start : trace.index(b"section_end:", start)]


def pipeline(**keywords: object) -> str:
    """One job named `job`, written as JSON (valid YAML) so no shell text needs YAML quoting."""
    return json.dumps({"job": keywords})


def start_cluster(root: Path, *extra: str) -> Iterator[Cluster]:
    """`kuberunner cluster` as a subprocess, as a user runs it; stops it when the generator closes."""
    kubeconfig = root / "kubeconfig"
    log = (root / "cluster.log").open("wb")
    process = subprocess.Popen(
        [
            str(BIN),
            "cluster",
            "--kubeconfig-out",
            str(kubeconfig),
            "--state-dir",
            str(root / "state"),
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not kubeconfig.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the embedded cluster did not start: " + (root / "cluster.log").read_text())
        time.sleep(0.05)
    yield Cluster(kubeconfig, root / "state", process)
    process.terminate()
    process.wait(timeout=60)
    log.close()
