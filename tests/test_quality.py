"""The package stays typed, linted and layered: mypy --strict, ruff and import-linter on kuberunner/."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        [str(BIN / "mypy"), "--strict", "kuberunner"],
        [str(BIN / "ruff"), "check", "kuberunner"],
        [str(BIN / "lint-imports")],
    ],
    ids=["mypy", "ruff", "import-linter"],
)
def test_tool_is_clean(command: list[str]) -> None:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
