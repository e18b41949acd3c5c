"""The one-line commands the runner writes to the PID-1 shell's stdin through attach.

The nonce lives only in the start line: PID 1 forks a subshell that keeps it in memory, so no
file, argv or environment the job can read ever holds it, and job output cannot forge a marker.
The stage token, which the job can see, only serves to find the stage's processes when killing.
"""

from __future__ import annotations

from kuberunner.shell.layout import PodPaths
from kuberunner.shell.quoting import quote


def start_stage(*, paths: PodPaths, stage: str, nonce: str, token: str, to_log_file: bool = True) -> bytes:
    """Run `stage` in the background of PID 1, its output then its exit marker appended to the log.

    The log is the log file on the logs volume, or with `to_log_file=False` PID 1's own stdout,
    which the runtime keeps as the container log (the `kubelet` transport). The outer subshell
    waits for the script, so even a SIGKILLed script yields a marker (137). The line is
    idempotent: `mkdir` of a per-run directory succeeds once, so a line written again after a
    connection dropped mid-write never starts the stage twice.
    """
    script = quote(paths.script(stage))
    guard = quote(f"{paths.logs_dir}/.started-{stage}-{token}")
    marker = '\\n{"command_exit_code": %d, "script": "%s", "nonce": "%s"}\\n'
    into = f" >>{quote(paths.log_file)}" if to_log_file else ""
    outer = " >/dev/null 2>&1" if to_log_file else ""
    line = (
        f"mkdir {guard} 2>/dev/null && "
        f'(KUBERUNNER_STAGE={quote(token)} "$0" {script} </dev/null{into} 2>&1 & wait $!; '
        f"printf '{marker}' $? {quote(stage)} {quote(nonce)}{into}) </dev/null{outer} &\n"
    )
    return line.encode()


def kill_stage(*, paths: PodPaths, token: str) -> bytes:
    """End the stage's whole process tree; the stage's marker then reports how it died."""
    script = quote(paths.script("kill_stage"))
    return f'"$0" {script} {quote(token)} </dev/null >/dev/null 2>&1 &\n'.encode()
