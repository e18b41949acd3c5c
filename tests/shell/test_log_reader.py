"""The file transport's log reader (`file_transport.reader_command`) with the tools images really have.

Run here as the container runs it: `sh -c READER` with the image's PATH, fed by stage lines that a
PID-1 shell runs. Two tool sets: this machine's (GNU tail, dash) and busybox alone (busybox's `tail -f`
only polls, once a second, which is what alpine and busybox images have).
"""

from __future__ import annotations

import os
import random
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuberunner.executor.file_transport import reader_command
from kuberunner.shell import commands, render
from kuberunner.shell.layout import PodPaths
from kuberunner.shell.markers import JobOutput, MarkerScanner, StageExited

BUSYBOX = shutil.which("busybox")
TOOLSETS = ["gnu", *(["busybox"] if BUSYBOX else [])]


@pytest.fixture(params=TOOLSETS)
def path(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The PATH of the "image": this machine's, or a directory holding nothing but busybox applets."""
    if request.param == "gnu":
        return "/usr/bin:/bin"
    assert BUSYBOX is not None
    bin_dir = tmp_path / "busybox-bin"
    bin_dir.mkdir()
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        (bin_dir / applet).symlink_to(BUSYBOX)
    return str(bin_dir)


@pytest.fixture
def paths(tmp_path: Path) -> PodPaths:
    made = PodPaths(
        scripts_dir=str(tmp_path / "scripts"), logs_dir=str(tmp_path / "logs"), builds_dir=str(tmp_path / "b")
    )
    for d in (made.scripts_dir, made.logs_dir, made.builds_dir):
        os.makedirs(d)
    Path(made.script("kill_stage")).write_text(render.KILL_STAGE)
    return made


class Reader:
    """The reader in a session of its own, as an exec'd process; its stdout read without blocking."""

    def __init__(self, paths: PodPaths, path: str, offset: int = 0) -> None:
        command = reader_command(paths.log_file, offset, paths.log_status_file, paths.log_wake_fifo)
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={"PATH": path},
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()

    def read(self, within: float) -> bytes:
        """What arrived within `within` seconds ("" when nothing did)."""
        ready, _, _ = select.select([self._fd], [], [], within)
        return os.read(self._fd, 1 << 20) if ready else b""

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=20)

    def session(self) -> list[str]:
        """Processes in the reader's session (its tail or cat, the watcher and its sleep)."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getsid(int(entry)) == self.proc.pid:
                        found.append(Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace"))
                except OSError:
                    continue
        return found

    def left_behind(self) -> list[str]:
        """What is still running 5 s after the reader ended: nothing (the watcher's last `sleep 1`
        outlives it by a second at most; no event says when an orphan ends, so look again)."""
        deadline = time.monotonic() + 5
        while (found := self.session()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return found

    def kill(self) -> None:
        if self.session():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def pid1(paths: PodPaths, path: str) -> Iterator[subprocess.Popen[bytes]]:
    """The container's PID 1: the image's `sh` reading stage lines from its stdin."""
    shell = shutil.which("sh", path=path)
    assert shell is not None
    proc = subprocess.Popen([shell], stdin=subprocess.PIPE, env={"PATH": path})
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=20)


def run_stages(pid1: subprocess.Popen[bytes], reader: Reader, paths: PodPaths, count: int) -> bytes:
    """`count` stages one after the other, each started once the last one's marker arrived."""
    assert pid1.stdin is not None
    scanner = MarkerScanner()
    out = b""
    for n in range(count):
        nonce = f"{n:032x}"
        scanner.expect(stage="step_script", nonce=nonce)
        pid1.stdin.write(commands.start_stage(paths=paths, stage="step_script", nonce=nonce, token=f"t{n}"))
        pid1.stdin.flush()
        ended = False
        deadline = time.monotonic() + 20
        while not ended:
            assert time.monotonic() < deadline, f"no marker for stage {n}; output so far: {out[-300:]!r}"
            for event in scanner.feed(reader.read(1.0)):
                if isinstance(event, JobOutput):
                    out += event.data
                elif isinstance(event, StageExited):
                    assert event.exit_code == 0
                    ended = True
    return out


def test_every_byte_from_the_offset_arrives_once_in_order(paths: PodPaths, path: str) -> None:
    rng = random.Random(7)
    log = Path(paths.log_file)
    written = rng.randbytes(70_000)
    log.write_bytes(written)
    reader = Reader(paths, path, offset=12_345)
    try:
        received = b""
        with log.open("ab") as appending:
            for _ in range(60):
                # Pieces of any size, lines cut anywhere, while the reader follows.
                piece = rng.randbytes(rng.randrange(1, 40_000))
                appending.write(piece)
                appending.flush()
                written += piece
                received += reader.read(0.0)
        deadline = time.monotonic() + 30
        while len(received) < len(written) - 12_345 and time.monotonic() < deadline:
            received += reader.read(1.0)
        assert received == written[12_345:]
        reader.close()
        assert reader.left_behind() == []
    finally:
        reader.kill()


def test_stage_after_stage_each_ends_with_its_output_exact(
    paths: PodPaths, path: str, pid1: subprocess.Popen[bytes]
) -> None:
    Path(paths.script("step_script")).write_text(
        render.render_user_stage(commands=["printf 'no newline'"], variables=(), project_dir=paths.builds_dir)
    )
    reader = Reader(paths, path)
    try:
        started = time.monotonic()
        out = run_stages(pid1, reader, paths, 20)
        took = time.monotonic() - started
        assert out == (b"\x1b[32;1m$ printf 'no newline'\x1b[0;m\nno newline") * 20
        # A reader that waits for busybox tail's once-a-second poll needs 19 s or more for these 20 stages.
        assert took < 10, f"20 stages took {took:.1f}s"
    finally:
        reader.kill()


def test_a_job_cannot_turn_the_wake_fifo_into_a_write_elsewhere(
    paths: PodPaths, path: str, pid1: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """The logs volume is the job's too: a symlink where the FIFO belongs must not make PID 1 (or the
    helper's PID 1, which may run as another user) write through it; the reader still delivers."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    os.symlink(victim, paths.log_wake_fifo)
    Path(paths.script("step_script")).write_text(
        render.render_user_stage(commands=["echo still read"], variables=(), project_dir=paths.builds_dir)
    )
    reader = Reader(paths, path)
    try:
        out = run_stages(pid1, reader, paths, 2)
    finally:
        reader.kill()
    assert out == (b"\x1b[32;1m$ echo still read\x1b[0;m\nstill read\n") * 2
    assert victim.read_bytes() == b"untouched"
