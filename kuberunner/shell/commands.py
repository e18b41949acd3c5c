"""The one-line commands the runner writes to the PID-1 shell's stdin through attach.

The nonce lives only in the start line: PID 1 forks a subshell that keeps it in memory, so no
file, argv or environment the job can read ever holds it, and job output cannot forge a marker.
The stage token, which the job can see, only serves to find the stage's processes when killing: it
is the *name* of an environment variable (`stage_marker_variable`), so no job variable, exported or
not, can take a stage's processes out of reach of the kill by overwriting it.
"""

from __future__ import annotations

from kuberunner.shell.layout import PodPaths
from kuberunner.shell.quoting import quote

STAGE_VARIABLE_PREFIX = "KUBERUNNER_STAGE_"


def stage_marker_variable(token: str) -> str:
    """`KUBERUNNER_STAGE_<token>=1` in the environment of every process of the stage."""
    return f"{STAGE_VARIABLE_PREFIX}{token}"


LOG_WRITE_FAILED = "F"
"""Written over the byte of the log status file (`PodPaths.log_status_file`) when a stage could not
be started or its marker could not be appended (the logs volume is full). The log reader watches
that byte, so the runner hears of it within seconds instead of waiting for a marker that never comes
until the job times out. A job can write it too, but that only turns its job into a system failure,
never into a success."""

LOG_STATUS_UNSET = "-"
"""The status byte as first made."""


def report_log_write_failure(paths: PodPaths) -> str:
    """Shell text that marks the log as unwritable: `1<>` writes in place, without truncating."""
    return f"printf {LOG_WRITE_FAILED} 1<>{quote(paths.log_status_file)}"


def wake_log_reader(paths: PodPaths) -> str:
    """Shell text that pokes the log reader's FIFO, if there is one (`PodPaths.log_wake_fifo`).

    `1<>` opens without blocking even when no reader holds the FIFO open, and `-p` keeps a job's
    regular file or symlink at that path from being written to (it only ever names a FIFO)."""
    fifo = quote(paths.log_wake_fifo)
    return f"[ -p {fifo} ] && printf '\\n' 1<>{fifo}"


LOST_EXIT_CODE = 1000
"""The exit code in a marker `probe_stage` prints: no `$?` is ever that large."""

_MARKER_FORMAT = '\\n{"command_exit_code": %d, "script": "%s", "nonce": "%s"}\\n'


def _guard(paths: PodPaths, stage: str, token: str) -> str:
    return quote(f"{paths.logs_dir}/.started-{stage}-{token}")


def start_stage(*, paths: PodPaths, stage: str, nonce: str, token: str, to_log_file: bool = True) -> bytes:
    """Run `stage` in the background of PID 1, its output then its exit marker appended to the log.

    The log is the log file on the logs volume, or with `to_log_file=False` PID 1's own stdout,
    which the runtime keeps as the container log (the `kubelet` transport). The outer subshell
    waits for the script, so even a SIGKILLed script yields a marker (137). The line is
    idempotent: `mkdir` of a per-run directory succeeds once, so a line written again after a
    connection dropped mid-write never starts the stage twice.

    When the guard cannot be made (and does not exist), or the marker cannot be appended, the log
    status file says LOG_WRITE_FAILED. Without the log file, the stage makes `exited` in its guard
    once its marker was written, for `probe_stage`.

    With the log file, the stage pokes the log reader as it starts (in the background: a FIFO a job
    filled must not keep its script from being waited for) and after its marker, so a reader whose
    `tail` polls (`file_transport`) sends the first output and the marker without waiting for a poll.
    """
    script = quote(paths.script(stage))
    guard = _guard(paths, stage, token)
    into = f" >>{quote(paths.log_file)}" if to_log_file else ""
    outer = " >/dev/null 2>&1" if to_log_file else ""
    give_up = report_log_write_failure(paths)
    wake = wake_log_reader(paths)
    exited = f"; : >{guard}/exited 2>/dev/null"
    wake_now, wake_after = (f" ({wake}) &", f"; {wake}") if to_log_file else ("", exited)
    line = (
        f"if mkdir {guard} 2>/dev/null; then "
        f'({stage_marker_variable(token)}=1 "$0" {script} </dev/null{into} 2>&1 & s=$!;{wake_now} wait $s; '
        f"printf '{_MARKER_FORMAT}' $? {quote(stage)} {quote(nonce)}{into} || {give_up}{wake_after}) "
        f"</dev/null{outer} & "
        f"elif [ ! -d {guard} ]; then {give_up} 2>/dev/null; fi\n"
    )
    return line.encode()


def kill_stage(*, paths: PodPaths, token: str) -> bytes:
    """End the stage's whole process tree; the stage's marker then reports how it died."""
    script = quote(paths.script("kill_stage"))
    return f'"$0" {script} {quote(token)} </dev/null >/dev/null 2>&1 &\n'.encode()


def probe_stage(*, paths: PodPaths, stage: str, nonce: str, token: str) -> bytes:
    """For the `kubelet` transport: if the stage has ended, print its marker again with LOST_EXIT_CODE.

    The kubelet serves only the current container log, so output it rotated away before the runner
    read it is gone, the stage's marker with it, and the runner would wait for that marker until the
    job timed out. The stage's `exited` file is made after its marker was written to the same pipe,
    so a probe marker always follows the real one in the log: seeing the probe's first means the
    real one was lost. A job that makes the file itself only turns its own job into a system failure.
    """
    guard = _guard(paths, stage, token)
    return (
        f"if [ -e {guard}/exited ]; then "
        f"printf '{_MARKER_FORMAT}' {LOST_EXIT_CODE} {quote(stage)} {quote(nonce)}; fi\n"
    ).encode()
