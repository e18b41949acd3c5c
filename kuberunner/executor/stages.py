"""Which container runs each stage of a job, and the header the trace opens its section with.

Decided once per job from what the job fetches its sources with, so neither the strategies nor the
flow ask "is this a git job?" again. A GitLab job (git sources) gets GitLab Runner's layout: the
`helper` container, sharing the scripts, logs and builds volumes, runs get_sources; the user's
stages run in `build`. A job whose sources come as an archive keeps a single `build` container.
"""

from __future__ import annotations

from dataclasses import dataclass

BUILD_CONTAINER = "build"
HELPER_CONTAINER = "helper"

USER_STAGES = ("get_sources", "step_script")
"""Stages whose exit codes decide the job, in order; after_script follows apart."""

TRANSFER_STAGES = (
    "restore_cache",
    "download_artifacts",
    "archive_cache",
    "archive_cache_on_failure",
    "upload_artifacts_on_success",
    "upload_artifacts_on_failure",
)
"""The helper's stages around the script (`shell.transfers`), GitLab Runner's names."""

WAIT_FOR_SERVICES = "wait_for_services"

_HELPER_STAGES = frozenset({"get_sources", WAIT_FOR_SERVICES, *TRANSFER_STAGES})
"""GitLab Runner runs every predefined stage in the helper."""

_HEADERS = {
    "step_script": 'Executing "step_script" stage of the job script',
    "after_script": "Running after_script",
    "restore_cache": "Restoring cache",
    WAIT_FOR_SERVICES: "Waiting for services to be up and running",
    "download_artifacts": "Downloading artifacts",
    "archive_cache": "Saving cache for successful job",
    "archive_cache_on_failure": "Saving cache for failed job",
    "upload_artifacts_on_success": "Uploading artifacts for successful job",
    "upload_artifacts_on_failure": "Uploading artifacts for failed job",
}


@dataclass(frozen=True, slots=True)
class StagePlan:
    """The pod's containers and where each stage runs."""

    git_sources: bool
    """True: get_sources clones with git, in the helper container."""

    @property
    def containers(self) -> tuple[str, ...]:
        """Every container of the pod, the build container first; all must run for the job to go on."""
        return (BUILD_CONTAINER, HELPER_CONTAINER) if self.git_sources else (BUILD_CONTAINER,)

    def container(self, stage: str) -> str:
        if self.git_sources and stage in _HELPER_STAGES:
            return HELPER_CONTAINER
        return BUILD_CONTAINER

    def header(self, stage: str) -> str:
        """The runner line that opens the stage's trace section (GitLab Runner's words)."""
        if stage == "get_sources":
            if self.git_sources:
                return "Getting source from Git repository"
            return "Preparing the project directory"
        return _HEADERS.get(stage, f'Executing "{stage}" stage of the job script')
