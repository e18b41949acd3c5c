"""`kuberunner run` as a user starts it: a subprocess with a config.toml, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from cli.execution import BIN, Cluster

from .fake_gitlab import FakeGitLab, FakeJob


def write_config(
    path: Path, *, url: str, token: str, concurrent: int = 4, extra: str = "", kubernetes: str = ""
) -> Path:
    """`extra` goes into `[[runners]]`, `kubernetes` into `[runners.kubernetes]` (lines of TOML)."""
    path.write_text(
        f'concurrent = {concurrent}\ncheck_interval = 1\n\n[[runners]]\n  name = "kuberunner"\n'
        f'  url = "{url}"\n  token = "{token}"\n  executor = "kubernetes"\n{extra}'
        f'  [runners.kubernetes]\n    namespace = "default"\n{kubernetes}'
    )
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any way to find a cluster on its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    return {**env, **extra}


class RunnerProcess:
    """`cluster` None: no `--kubeconfig` (config.toml must say where the cluster is)."""

    def __init__(
        self, cluster: Cluster | None, config: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.log_path = config.parent / "runner.log"
        self._log = self.log_path.open("wb")
        where = ("--kubeconfig", str(cluster.kubeconfig)) if cluster is not None else ()
        self.process = subprocess.Popen(
            [str(BIN), "-v", "run", "-c", str(config), *where, *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env or clean_env(),
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def stop(self, *, within: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + within
        while self.process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - a process
            await asyncio.sleep(0.05)
        if self.process.poll() is None:
            self.process.kill()
        status = self.process.wait()
        self._log.close()
        return status


async def finished(job: FakeJob, runner: RunnerProcess, *, within: float = 60) -> FakeJob:
    try:
        await asyncio.wait_for(job.finished.wait(), timeout=within)
    except TimeoutError:
        raise AssertionError(
            f"job {job.id} not finished ({job.state}); runner log:\n{runner.log()[-3000:]}"
            f"\ntrace: {job.text[-2000:]!r}"
        ) from None
    return job


async def until(condition: Any, *, within: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def script_job(*script: str, after: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {
            "name": "script",
            "script": list(script),
            "timeout": 3600,
            "when": "on_success",
            "allow_failure": False,
        }
    ]
    if after:
        steps.append(
            {
                "name": "after_script",
                "script": list(after),
                "timeout": 3600,
                "when": "always",
                "allow_failure": True,
            }
        )
    return {"steps": steps, **extra}


async def started_runner(
    gitlab: FakeGitLab,
    cluster: Cluster,
    tmp_path: Path,
    *,
    concurrent: int = 4,
    extra: str = "",
    kubernetes: str = "",
) -> RunnerProcess:
    runner = gitlab.add_runner()
    config = write_config(
        tmp_path / "config.toml",
        url=gitlab.base_url,
        token=runner.token,
        concurrent=concurrent,
        extra=extra,
        kubernetes=kubernetes,
    )
    return RunnerProcess(cluster, config)
