"""The config.toml keys only `kuberunner run` needs, read beside `kuberunner.config`'s typed settings.

`kuberunner.config` reads what the executor acts on; the request loop also needs `check_interval`
and each runner's `limit`, `request_concurrency` and `id`, with GitLab Runner's defaults. The file
has already been validated as TOML by `load_runner_config`, so only value types are checked here.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kuberunner.config import RunnerConfig, RunnerEntry, load_runner_config
from kuberunner.errors import ConfigFileError


@dataclass(frozen=True, slots=True)
class PollSettings:
    """How one `[[runners]]` entry asks for jobs."""

    limit: int = 0
    """Jobs of this entry at once; 0: only `concurrent` applies."""
    request_concurrency: int = 1
    """`jobs/request` calls in flight at once for this entry (GitLab Runner's default)."""


@dataclass(frozen=True, slots=True)
class RunSettings:
    config: RunnerConfig
    check_interval: float
    """Seconds between requests after "no job"; GitLab Runner's default 3 when <= 0 or missing."""
    polls: tuple[PollSettings, ...]
    """One per `config.runners` entry, same order."""

    def pairs(self) -> list[tuple[RunnerEntry, PollSettings]]:
        return list(zip(self.config.runners, self.polls, strict=True))


def load_run_settings(path: Path) -> RunSettings:
    config = load_runner_config(path)
    document = tomllib.loads(path.read_text("utf-8"))
    interval = _number(path, document, "check_interval", 3)
    polls = []
    for index, table in enumerate(document.get("runners", [])):
        where = f"runners[{index}]."
        limit = _number(path, table, "limit", 0, where)
        concurrency = _number(path, table, "request_concurrency", 1, where)
        if limit < 0:
            raise ConfigFileError(path, 0, "must not be negative", key=f"{where}limit")
        polls.append(PollSettings(limit=int(limit), request_concurrency=max(1, int(concurrency))))
    return RunSettings(config, float(interval) if interval > 0 else 3.0, tuple(polls))


def _number(path: Path, table: dict[str, Any], key: str, default: int, where: str = "") -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigFileError(path, 0, "expected a number", key=f"{where}{key}")
    return float(value)
