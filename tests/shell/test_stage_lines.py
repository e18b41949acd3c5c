"""The start and kill lines, run by a real PID-1-like shell reading its stdin (bash and dash)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from kuberunner.shell import commands, render
from kuberunner.shell.layout import DETECT_SHELL, PodPaths
from kuberunner.shell.markers import JobOutput, MarkerScanner, StageExited, marker_bytes

SHELLS = [s for s in ("/bin/bash", "/bin/dash") if shutil.which(s)]
NONCE = "feedfacefeedfacefeedfacefeedface"


class Pid1:
    """A shell reading commands from a pipe, as the build container's PID 1 does."""

    def __init__(self, shell: str, paths: PodPaths, stdout: IO[bytes] | int = subprocess.DEVNULL) -> None:
        self.paths = paths
        self.proc = subprocess.Popen([shell], stdin=subprocess.PIPE, stdout=stdout)

    def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)

    def run_stage(self, stage: str, *, token: str = "tok", within: float = 20.0) -> tuple[bytes, int]:
        scanner = MarkerScanner()
        scanner.expect(stage=stage, nonce=NONCE)
        log = Path(self.paths.log_file)
        start = log.stat().st_size if log.exists() else 0
        self.send(commands.start_stage(paths=self.paths, stage=stage, nonce=NONCE, token=token))
        deadline = time.monotonic() + within
        out = b""
        while time.monotonic() < deadline:
            data = log.read_bytes()[start:] if log.exists() else b""
            scanner = MarkerScanner()
            scanner.expect(stage=stage, nonce=NONCE)
            events = scanner.feed(data)
            exits = [e for e in events if isinstance(e, StageExited)]
            if exits:
                out = b"".join(e.data for e in events if isinstance(e, JobOutput))
                return out, exits[0].exit_code
            time.sleep(0.02)
        raise AssertionError(f"no marker for {stage} within {within}s")


@pytest.fixture(params=SHELLS)
def pid1(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pid1]:
    paths = PodPaths(
        scripts_dir=str(tmp_path / "scripts"),
        logs_dir=str(tmp_path / "logs"),
        builds_dir=str(tmp_path / "builds"),
    )
    for d in (paths.scripts_dir, paths.logs_dir, paths.builds_dir):
        os.makedirs(d)
    Path(paths.script("kill_stage")).write_text(render.KILL_STAGE)
    shell = Pid1(request.param, paths)
    yield shell
    shell.close()


def write_stage(
    pid1: Pid1, stage: str, lines: list[str], variables: tuple[tuple[str, str], ...] = ()
) -> None:
    text = render.render_user_stage(commands=lines, variables=variables, project_dir=pid1.paths.builds_dir)
    Path(pid1.paths.script(stage)).write_text(text)


def test_stage_output_is_exact_and_exit_code_comes_from_marker(pid1: Pid1) -> None:
    write_stage(pid1, "step_script", ["printf 'no newline'", "exit 3"])
    out, code = pid1.run_stage("step_script")
    assert code == 3
    assert out == b"\x1b[32;1m$ printf 'no newline'\x1b[0;m\nno newline\x1b[32;1m$ exit 3\x1b[0;m\n"


def test_script_stops_at_first_failing_command(pid1: Pid1) -> None:
    write_stage(pid1, "step_script", ["echo one", "false", "echo never"])
    out, code = pid1.run_stage("step_script")
    assert code == 1
    assert b"one\n" in out and b"never\n" not in out


def test_variables_are_exported_verbatim(pid1: Pid1) -> None:
    value = 'it\'s $HOME `x` "q" \\ end'
    write_stage(pid1, "step_script", ['printf "%s" "$TRICKY"'], (("TRICKY", value),))
    out, code = pid1.run_stage("step_script")
    assert code == 0
    assert out.endswith(value.encode())


def test_a_job_reading_stdin_does_not_eat_the_next_command(pid1: Pid1) -> None:
    write_stage(pid1, "step_script", ["cat", "read x || echo eof"])
    out, code = pid1.run_stage("step_script")
    assert code == 0 and out.endswith(b"eof\n")
    write_stage(pid1, "after_script", ["echo second"])
    out, code = pid1.run_stage("after_script")
    assert (code, out.endswith(b"second\n")) == (0, True)


def test_sigkilled_script_still_reports_137(pid1: Pid1) -> None:
    write_stage(pid1, "step_script", ["kill -KILL $$"])
    _, code = pid1.run_stage("step_script")
    assert code == 137


def test_kill_line_ends_children_grandchildren_and_orphans(pid1: Pid1) -> None:
    write_stage(pid1, "step_script", ["sleep 1001 &", "sh -c 'sleep 1002 & sleep 1003'"])
    pid1.send(commands.start_stage(paths=pid1.paths, stage="step_script", nonce=NONCE, token="t1"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _sleepers() < 3:
        time.sleep(0.05)
    assert _sleepers() == 3
    pid1.send(commands.kill_stage(paths=pid1.paths, token="t1"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _sleepers():
        time.sleep(0.05)
    assert _sleepers() == 0
    assert b'"command_exit_code": 143' in Path(pid1.paths.log_file).read_bytes()


def _sleepers() -> int:
    found = subprocess.run(["pgrep", "-f", "^sleep 100[123]$"], capture_output=True, text=True)
    return len(found.stdout.split())


def test_detect_shell_becomes_a_shell_reading_stdin() -> None:
    done = subprocess.run(
        ["sh", "-c", DETECT_SHELL], input=b"echo $((6 * 7))\n", capture_output=True, timeout=10
    )
    assert done.stdout == b"42\n"


def test_a_start_line_written_twice_starts_the_stage_once(pid1: Pid1) -> None:
    write_stage(pid1, "step_script", ["echo once"])
    line = commands.start_stage(paths=pid1.paths, stage="step_script", nonce=NONCE, token="same")
    pid1.send(line)
    out, code = pid1.run_stage("step_script", token="same")
    assert (out.count(b"once\n"), code) == (1, 0)
    assert Path(pid1.paths.log_file).read_bytes().count(b"once\n") == 1


def wait_for_status(pid1: Pid1, expected: str, *, within: float = 10) -> None:
    status = Path(pid1.paths.log_status_file)
    deadline = time.monotonic() + within
    while status.read_text() != expected:
        assert time.monotonic() < deadline, status.read_text()
        time.sleep(0.02)


def test_a_marker_that_cannot_be_written_marks_the_log_status(pid1: Pid1) -> None:
    Path(pid1.paths.log_status_file).write_text(commands.LOG_STATUS_UNSET)
    write_stage(pid1, "step_script", ["echo lost"])
    # Every write to /dev/full fails with ENOSPC, as on a full logs volume.
    Path(pid1.paths.log_file).symlink_to("/dev/full")
    pid1.send(commands.start_stage(paths=pid1.paths, stage="step_script", nonce=NONCE, token="full"))
    wait_for_status(pid1, commands.LOG_WRITE_FAILED)
    assert pid1.proc.poll() is None


def test_a_stage_whose_guard_cannot_be_made_marks_the_log_status(pid1: Pid1) -> None:
    Path(pid1.paths.log_status_file).write_text(commands.LOG_STATUS_UNSET)
    write_stage(pid1, "step_script", ["echo never"])
    # A file where the guard directory goes: mkdir fails, as it does on a full volume.
    Path(pid1.paths.logs_dir, ".started-step_script-g").write_text("")
    pid1.send(commands.start_stage(paths=pid1.paths, stage="step_script", nonce=NONCE, token="g"))
    wait_for_status(pid1, commands.LOG_WRITE_FAILED)
    assert not Path(pid1.paths.log_file).exists()


def test_a_stage_that_ran_leaves_the_log_status_alone(pid1: Pid1) -> None:
    Path(pid1.paths.log_status_file).write_text(commands.LOG_STATUS_UNSET)
    write_stage(pid1, "step_script", ["echo fine"])
    out, code = pid1.run_stage("step_script")
    assert (out.endswith(b"\nfine\n"), code) == (True, 0)
    assert Path(pid1.paths.log_status_file).read_text() == commands.LOG_STATUS_UNSET


@pytest.mark.parametrize("shell", SHELLS)
def test_a_probe_prints_the_lost_marker_only_after_the_stage_exited(shell: str, tmp_path: Path) -> None:
    """The kubelet transport: output and marker go to PID 1's stdout (the container log)."""
    paths = PodPaths(scripts_dir=str(tmp_path / "s"), logs_dir=str(tmp_path / "l"), builds_dir=str(tmp_path))
    os.makedirs(paths.scripts_dir)
    os.makedirs(paths.logs_dir)
    stdout = tmp_path / "container.log"
    go = tmp_path / "go"
    with stdout.open("wb") as log:
        pid1 = Pid1(shell, paths, stdout=log)
    try:
        write_stage(pid1, "step_script", [f"while [ ! -e {go} ]; do sleep 0.05; done", "echo done"])
        pid1.send(
            commands.start_stage(paths=paths, stage="step_script", nonce=NONCE, token="k", to_log_file=False)
        )
        probe = commands.probe_stage(paths=paths, stage="step_script", nonce=NONCE, token="k")
        pid1.send(probe + b"echo probed-while-running\n")
        wait_for_bytes(stdout, b"probed-while-running\n")
        assert b"command_exit_code" not in stdout.read_bytes()
        go.touch()
        wait_for_bytes(stdout, b'"nonce": "' + NONCE.encode())
        pid1.send(probe + b"echo probed-after\n")
        wait_for_bytes(stdout, b"probed-after\n")
    finally:
        pid1.close()
    real = marker_bytes(stage="step_script", nonce=NONCE, exit_code=0)
    lost = marker_bytes(stage="step_script", nonce=NONCE, exit_code=commands.LOST_EXIT_CODE)
    assert stdout.read_bytes().endswith(b"done\n" + real + lost + b"probed-after\n")


def wait_for_bytes(path: Path, needle: bytes, *, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while needle not in path.read_bytes():
        assert time.monotonic() < deadline, path.read_bytes()[-500:]
        time.sleep(0.02)
