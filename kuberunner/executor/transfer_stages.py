"""The helper's stages around the script: cache and artifacts in, cache and artifacts out.

Order as in GitLab Runner: get_sources, restore_cache, download_artifacts, step_script,
after_script, archive_cache, upload_artifacts_on_(success|failure). A failing download fails the
job (its script would run without what it needs); a failing upload turns a success into a failure;
the cache only ever warns. A canceled job or a lost pod moves nothing out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from kuberunner.executor.results import Observation, Success, decide
from kuberunner.executor.strategy import Exited, JobContext, Lost, Stopped, Strategy
from kuberunner.shell import transfers as shell
from kuberunner.shell.transfers import Transfers

UPLOAD_TIMEOUT = 3600.0
"""Seconds the stages after the script may take in all; curl itself drops a stalled transfer."""


def stages_before_script(transfers: Transfers | None) -> tuple[str, ...]:
    if transfers is None:
        return ()
    pulls = any(c.pull and c.get_urls for c in transfers.caches)
    return (("restore_cache",) if pulls else ()) + (("download_artifacts",) if transfers.downloads else ())


def after_script_stage(seen: Observation) -> str:
    """The after_script variant whose CI_JOB_STATUS says how the job ended."""
    return after_script_stage_for(job_status(seen))


def after_script_stage_for(status: str) -> str:
    return "after_script" if status == "success" else f"after_script_{status}"


def job_status(seen: Observation) -> str:
    if seen.canceled:
        return "canceled"
    return "success" if isinstance(decide(seen), Success) else "failed"


def script_files(transfers: Transfers | None, *, project_dir: str) -> dict[str, bytes]:
    """The transfer stages' scripts, for the scripts Secret (they hold no credential)."""
    if transfers is None:
        return {}
    files: dict[str, bytes] = {}
    if "restore_cache" in stages_before_script(transfers):
        files["restore_cache"] = shell.render_cache_restore(
            transfers.caches, project_dir=project_dir
        ).encode()
    if transfers.downloads:
        files["download_artifacts"] = shell.render_downloads(transfers, project_dir=project_dir).encode()
    for succeeded, stage in ((True, "archive_cache"), (False, "archive_cache_on_failure")):
        saved = [(i, c) for i, c in enumerate(transfers.caches) if c in transfers.caches_to_save(succeeded)]
        if saved:
            files[stage] = shell.render_cache_save(saved, project_dir=project_dir).encode()
    for succeeded, stage in ((True, "upload_artifacts_on_success"), (False, "upload_artifacts_on_failure")):
        uploads = transfers.uploads_for(succeeded)
        if uploads:
            files[stage] = shell.render_uploads(transfers, uploads, project_dir=project_dir).encode()
    return files


def private_files(transfers: Transfers | None) -> dict[str, bytes]:
    """curl config files with tokens and presigned URLs: mounted in the helper container alone."""
    if transfers is None:
        return {}
    files: dict[str, bytes] = {}
    if transfers.uploads:
        files["job-token"] = shell.curl_config(transfers.job_token, transfers.ca_file)
    for index, download in enumerate(transfers.downloads):
        files[shell.download_config_name(index)] = shell.curl_config(download.token, transfers.ca_file)
    for index, cache in enumerate(transfers.caches):
        for attempt, url in enumerate(cache.get_urls):
            files[shell.cache_config_name(index, "get", attempt)] = shell.url_config(url)
        if cache.put_url:
            files[shell.cache_config_name(index, "put")] = shell.url_config(cache.put_url)
    return files


async def run_stages_after(
    job: JobContext, strategy: Strategy, transfers: Transfers | None, seen: Observation, *, present: set[str]
) -> Observation:
    """Save the cache and upload the artifacts the job's ending asks for; the new observation."""
    if transfers is None or seen.canceled or seen.system_error is not None:
        return seen
    succeeded = isinstance(decide(seen), Success)
    cache_stage = "archive_cache" if succeeded else "archive_cache_on_failure"
    upload_stage = "upload_artifacts_on_success" if succeeded else "upload_artifacts_on_failure"
    deadline = asyncio.get_running_loop().time() + UPLOAD_TIMEOUT
    for stage in (cache_stage, upload_stage):
        if stage not in present:
            continue
        with _section(job, stage):
            end = await strategy.run_stage(job, stage, deadline=deadline)
        match end:
            case Exited(exit_code=0):
                pass
            case Exited(exit_code=code) if stage == upload_stage:
                return Observation((*seen.exit_codes, code), timed_out_after=seen.timed_out_after)
            case Exited():
                pass
            case Lost(reason=reason):
                return Observation(seen.exit_codes, system_error=reason)
            case Stopped(canceled=True):
                return Observation(seen.exit_codes, canceled=True)
            case Stopped():
                job.trace.runner_line(f"WARNING: {stage} timed out", level="warning")
                if stage == upload_stage:
                    return Observation(seen.exit_codes, system_error="uploading the artifacts timed out")
    return seen


@contextlib.contextmanager
def _section(job: JobContext, stage: str) -> Iterator[None]:
    job.trace.section_start(stage, job.plan.header(stage))
    try:
        yield
    finally:
        job.trace.section_end(stage)
