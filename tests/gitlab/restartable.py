"""A `kuberunner run` that is SIGKILLed and started again on the same config.toml (issue 12's
restarts), for the tests of adoption."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cli.execution import Cluster

from .fake_gitlab import FakeGitLab
from .runner_process import RunnerProcess, write_config


class Restartable:
    """A `kuberunner run` that can be SIGKILLed and started again on the same config.toml."""

    def __init__(
        self,
        gitlab: FakeGitLab,
        cluster: Cluster,
        tmp_path: Path,
        transport: str = "file",
        *,
        extra: str = "",
    ) -> None:
        """`extra`: lines of TOML for `[[runners]]` (a cache, say)."""
        runner = gitlab.add_runner()
        self.token = runner.token
        self.config = write_config(
            tmp_path / "config.toml",
            url=gitlab.base_url,
            token=runner.token,
            extra=extra,
            kubernetes=f'    log_transport = "{transport}"\n',
        )
        self.cluster = cluster
        self.records = tmp_path / "kuberunner-jobs"
        self.logs: list[str] = []
        self.process = RunnerProcess(cluster, self.config)

    def kill(self) -> None:
        self.process.process.kill()
        self.process.process.wait()
        self.process._log.close()
        self.logs.append(self.process.log())
        self.process.log_path.rename(self.process.log_path.with_suffix(f".{len(self.logs)}.log"))

    def start(self) -> None:
        self.process = RunnerProcess(self.cluster, self.config)

    def log(self) -> str:
        return "\n---- restart ----\n".join([*self.logs, self.process.log()])

    def record_files(self) -> list[str]:
        return sorted(p.name for p in self.records.iterdir()) if self.records.exists() else []


async def down_for_a_while(runner: Restartable, seconds: float = 2) -> None:
    """Kill the runner and leave it down while the job goes on in its pod (a scenario, not a wait)."""
    runner.kill()
    await asyncio.sleep(seconds)
