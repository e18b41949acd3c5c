"""Writing config.toml for `register` and `unregister`, keeping the user's comments and unknown keys.

Reading stays with `kuberunner.config` (tomllib, typed); this module only edits the document with
tomlkit, so a file shared with a real GitLab Runner keeps everything it had. The file is replaced
atomically (write to a temporary file, then rename) with mode 0600, as it holds tokens.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Table

from kuberunner.errors import ConfigFileError


@dataclass(frozen=True, slots=True)
class NewRunner:
    name: str
    url: str
    id: int
    token: str
    token_obtained_at: datetime
    token_expires_at: datetime | None
    """None: never (GitLab Runner writes Go's zero time)."""
    kubernetes: dict[str, str]
    """`[runners.kubernetes]` keys given on the command line (host, namespace, image)."""
    tls_ca_file: str | None = None


_NEVER = datetime.fromisoformat("0001-01-01T00:00:00+00:00")


def _load(path: Path) -> tomlkit.TOMLDocument:
    if not path.exists():
        document = tomlkit.document()
        document.add("concurrent", 1)
        document.add("check_interval", 0)
        return document
    try:
        return tomlkit.parse(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, TOMLKitError) as exc:
        raise ConfigFileError(path, 0, f"cannot be updated: {exc}") from exc


def _save(path: Path, document: tomlkit.TOMLDocument) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".config.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(tomlkit.dumps(document))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _runners(document: tomlkit.TOMLDocument) -> AoT:
    existing = document.get("runners")
    if existing is None:
        table = tomlkit.aot()
        document.append("runners", table)
        return table
    if not isinstance(existing, AoT):
        raise ValueError("'runners' is not an array of tables")
    return existing


def add_runner(path: Path, runner: NewRunner) -> None:
    document = _load(path)
    table = tomlkit.table()
    table.add("name", runner.name)
    table.add("url", runner.url)
    table.add("id", runner.id)
    table.add("token", runner.token)
    if runner.tls_ca_file:
        table.add("tls-ca-file", runner.tls_ca_file)
    table.add("token_obtained_at", runner.token_obtained_at)
    table.add("token_expires_at", runner.token_expires_at or _NEVER)
    table.add("executor", "kubernetes")
    kubernetes = tomlkit.table()
    for key, value in runner.kubernetes.items():
        kubernetes.add(key, value)
    table.add("kubernetes", kubernetes)
    try:
        _runners(document).append(table)
    except ValueError as exc:
        raise ConfigFileError(path, 0, str(exc)) from exc
    _save(path, document)


def remove_runners(path: Path, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Drop every `[[runners]]` entry for which `keep` is false; returns the dropped ones."""
    document = _load(path)
    try:
        runners = _runners(document)
    except ValueError as exc:
        raise ConfigFileError(path, 0, str(exc)) from exc
    dropped: list[dict[str, Any]] = []
    for index in reversed(range(len(runners))):
        entry: Table = runners[index]
        plain = entry.unwrap()
        if not keep(plain):
            dropped.insert(0, plain)
            del runners[index]
    if not runners:
        # An empty array of tables would be written as `runners = []` at the top of the file.
        del document["runners"]
    if dropped:
        _save(path, document)
    return dropped
