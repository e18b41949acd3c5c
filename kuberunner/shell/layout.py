"""Where things live inside the build container: one definition shared by the pod spec and the shell lines."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PodPaths:
    """Mount points of the job's volumes. Kept apart (never nested) so each volume keeps its own owner."""

    scripts_dir: str = "/kuberunner/scripts"
    """The Secret volume with the rendered stage scripts (and the project archive)."""
    logs_dir: str = "/kuberunner/logs"
    """The emptyDir that holds the job's output log."""
    builds_dir: str = "/builds"
    """The emptyDir under which $CI_PROJECT_DIR lives."""

    @property
    def log_file(self) -> str:
        return f"{self.logs_dir}/output.log"

    @property
    def log_status_file(self) -> str:
        """One byte made before any stage runs, overwritten in place (no new block needed, so even on
        a full volume) with LOG_WRITE_FAILED when a stage line cannot write to the log."""
        return f"{self.logs_dir}/.log-status"

    @property
    def log_wake_fifo(self) -> str:
        """A FIFO the log reader makes when its `tail` cannot follow promptly (busybox polls once a
        second): stage lines write a newline to it when a stage starts and after its marker, so the
        reader copies what is new at once instead of at its next poll."""
        return f"{self.logs_dir}/.log-wake"

    def script(self, stage: str) -> str:
        return f"{self.scripts_dir}/{stage}"


DETECT_SHELL = (
    "for s in /usr/local/bin/bash /usr/bin/bash /bin/bash /usr/local/bin/sh /usr/bin/sh /bin/sh /busybox/sh; "
    'do if [ -x "$s" ]; then exec "$s"; fi; done; echo shell not found; exit 1'
)
"""PID 1 of the build container: `sh -c DETECT_SHELL` becomes the first bash or sh found, reading stdin."""
