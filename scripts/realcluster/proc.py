"""Running commands, and the one error type whose message is the single line a user sees."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


class Failure(Exception):
    """What is wrong, in one line; `main` prints it and exits 1."""


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    capture: bool = False,
    quiet: bool = False,
    log: Path | None = None,
) -> str:
    """Runs argv; returns its stdout when `capture`; output goes to `log`, is swallowed (`quiet`) or
    passes through. On failure raises Failure carrying the last lines of the output."""
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            code = subprocess.run(
                list(argv), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
            ).returncode
        stdout, output = "", tail(log, 15)
    else:
        piped = subprocess.PIPE if (capture or quiet) else None
        done = subprocess.run(
            list(argv), cwd=cwd, env=env, stdout=piped, stderr=subprocess.PIPE if quiet else None, text=True
        )
        code, stdout = done.returncode, done.stdout or ""
        output = (stdout if quiet else "") + (done.stderr or "")
    if code != 0:
        last = "\n".join(output.strip().splitlines()[-15:])
        raise Failure(f"`{' '.join(argv[:6])}` failed with {code}" + (f":\n{last}" if last else ""))
    return stdout


def tail(path: Path, lines: int) -> str:
    try:
        data = path.read_bytes()[-64 * 1024 :]
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
