"""`register`, `verify`, `unregister` and `list`: GitLab's runner records and the config.toml that holds them.

A `glrt-` token (created in GitLab's UI) is verified; any other token is a legacy registration token
and registers a new runner. Either way the runner's authentication token, id and token times land
in a new `[[runners]]` entry. Output lines go to the caller (`echo`), so the CLI stays thin.
"""

from __future__ import annotations

import ssl
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kuberunner.config import load_runner_config
from kuberunner.errors import BadInput
from kuberunner.gitlab.client import GitLabClient, GitLabError, Rejected
from kuberunner.runner import config_writer, system_id

Echo = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RegisterOptions:
    config: Path
    url: str
    token: str
    name: str = ""
    kubernetes: dict[str, str] = field(default_factory=dict)
    tls_ca_file: str | None = None


def _client(url: str, tls_ca_file: str | None = None, *, where: str = "--url") -> GitLabClient:
    try:
        return GitLabClient(url, tls_ca_file=tls_ca_file)
    except ValueError as exc:
        raise BadInput(f"{where}: {exc}") from exc
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadInput(f"tls-ca-file {tls_ca_file}: {reason}") from exc


def _entry_client(entry: dict[str, Any]) -> GitLabClient:
    ca_file = entry.get("tls-ca-file")
    return _client(
        str(entry.get("url", "")),
        ca_file if isinstance(ca_file, str) and ca_file else None,
        where=f"runner {entry.get('name', '')!r}: url",
    )


def _expiry(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


async def register(options: RegisterOptions, echo: Echo) -> int:
    system = system_id.load_or_create(options.config)
    name = options.name or "kuberunner"
    try:
        async with _client(options.url, options.tls_ca_file) as api:
            if options.token.startswith("glrt-"):
                found = await api.verify(token=options.token, system_id=system)
            else:
                found = await api.register(token=options.token, description=name, system_id=system)
    except GitLabError as exc:
        echo(f"ERROR: registering runner failed: {exc}")
        return 1
    config_writer.add_runner(
        options.config,
        config_writer.NewRunner(
            name=name,
            url=options.url,
            id=found.id,
            token=found.token,
            token_obtained_at=datetime.now(UTC).replace(microsecond=0),
            token_expires_at=_expiry(found.token_expires_at),
            kubernetes=dict(options.kubernetes),
            tls_ca_file=options.tls_ca_file,
        ),
    )
    echo(f"Runner registered successfully: {name} (id {found.id}) in {options.config}")
    return 0


def _entries(config: Path) -> list[dict[str, Any]]:
    load_runner_config(config)  # every problem as one ConfigFileError line
    runners = tomllib.loads(config.read_text("utf-8")).get("runners", [])
    return [r for r in runners if isinstance(r, dict)]


async def verify(config: Path, echo: Echo, *, delete: bool = False) -> int:
    system = system_id.load_or_create(config)
    invalid: set[str] = set()
    for entry in _entries(config):
        name, token = str(entry.get("name", "")), str(entry.get("token", ""))
        try:
            async with _entry_client(entry) as api:
                await api.verify(token=token, system_id=system)
        except Rejected as exc:
            if exc.status != 403:
                echo(f"ERROR: Verifying runner {name}: {exc}")
                continue
            echo(f"ERROR: Verifying runner {name}: is removed")
            invalid.add(token)
        except GitLabError as exc:
            echo(f"ERROR: Verifying runner {name}: {exc}")
            continue
        else:
            echo(f"Verifying runner {name}: is valid")
    if delete and invalid:
        config_writer.remove_runners(config, lambda e: e.get("token") not in invalid)
        echo(f"Removed {len(invalid)} invalid runner(s) from {config}")
    return 1 if invalid and not delete else 0


async def unregister(config: Path, echo: Echo, *, name: str | None, all_runners: bool) -> int:
    if name is None and not all_runners:
        raise BadInput("unregister: give --name NAME or --all-runners")
    system = system_id.load_or_create(config)
    chosen = [e for e in _entries(config) if all_runners or e.get("name") == name]
    if not chosen:
        echo(f"ERROR: no runner named {name!r} in {config}")
        return 1
    gone: set[str] = set()
    status = 0
    for entry in chosen:
        token = str(entry.get("token", ""))
        try:
            async with _entry_client(entry) as api:
                await api.unregister(token=token, system_id=system)
        except Rejected as exc:
            if exc.status not in (403, 404):
                echo(f"ERROR: Unregistering runner {entry.get('name')}: {exc}")
                status = 1
                continue
        except GitLabError as exc:
            echo(f"ERROR: Unregistering runner {entry.get('name')}: {exc}")
            status = 1
            continue
        gone.add(token)
        echo(f"Unregistering runner {entry.get('name')}: succeeded")
    config_writer.remove_runners(config, lambda e: e.get("token") not in gone)
    return status


def list_runners(config: Path, echo: Echo) -> int:
    echo(f"Listing configured runners ConfigFile={config}")
    for entry in _entries(config):
        token = str(entry.get("token", ""))
        shown = token[:12] + "…" if len(token) > 12 else token
        echo(
            f"{entry.get('name', '')}\tExecutor={entry.get('executor', '')} Token={shown} "
            f"URL={entry.get('url', '')}"
        )
    return 0
