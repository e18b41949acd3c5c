"""`exec` on the in-process embedded cluster: the runner's own secret files are out of a job's reach.

The files live outside the directories every container sees empty (/tmp, /root, /home), where a job
could otherwise read them through the host file system it runs on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .execution import BIN

pytestmark = pytest.mark.embedded_only("jobs read the runner's host files only on the embedded cluster")

CONFIG_SECRET = "glrt-config-secret-7f3a"
MASKED_SECRET = "masked-file-secret-91c2"


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kr-secrets-", dir="/var/lib"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_config_and_masked_variable_files_are_unreadable(tmp_path: Path, outside_tmp: Path) -> None:
    config = outside_tmp / "config.toml"
    config.write_text(f'[[runners]]\nname = "x"\ntoken = "{CONFIG_SECRET}"\n')
    masked = outside_tmp / "masked.env"
    masked.write_text(f"DEPLOY_KEY={MASKED_SECRET}\n")
    script = [f"cat {config} || echo config-unreadable", f"cat {masked} || echo masked-unreadable"]
    lines = "".join(f"    - {line}\n" for line in script)
    (tmp_path / ".gitlab-ci.yml").write_text(f"job:\n  script:\n{lines}")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path)
    argv = [str(BIN), "exec", "-f", str(tmp_path / ".gitlab-ci.yml"), "-c", str(config)]
    done = subprocess.run(
        [*argv, "--masked-var-file", str(masked)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"config-unreadable\n" in done.stdout
    assert b"masked-unreadable\n" in done.stdout
    assert CONFIG_SECRET.encode() not in done.stdout
    assert MASKED_SECRET.encode() not in done.stdout
