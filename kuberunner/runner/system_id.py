"""The runner's system id: one per machine, kept in `.runner_system_id` next to config.toml.

GitLab keys a "runner manager" on (runner, system id), so the id must stay the same across restarts:
it is derived from /etc/machine-id when there is one (`s_` + 12 hex), otherwise random (`r_` + 12
alphanumerics), and written once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from pathlib import Path

FILE_NAME = ".runner_system_id"
_VALID = re.compile(r"[sr]_[A-Za-z0-9]{12}")


def _machine_id() -> str | None:
    for path in (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id")):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return None


def new_system_id() -> str:
    machine = _machine_id()
    if machine is not None:
        return "s_" + hmac.new(machine.encode(), b"gitlab-runner", hashlib.sha256).hexdigest()[:12]
    alphabet = string.ascii_letters + string.digits
    return "r_" + "".join(secrets.choice(alphabet) for _ in range(12))


def load_or_create(config_path: Path) -> str:
    """The id in the file next to `config_path`, created when missing or unreadable."""
    path = config_path.parent / FILE_NAME
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    if _VALID.fullmatch(text):
        return text
    system_id = new_system_id()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(system_id + "\n")
    except OSError:
        pass  # a read-only directory still runs, with an id that changes on restart
    return system_id
