"""The helper's stages around the script: cache and artifacts in, cache and artifacts out.

Order as in GitLab Runner: get_sources, restore_cache, download_artifacts, step_script,
after_script, archive_cache, upload_artifacts_on_(success|failure). A failing download fails the
job (its script would run without what it needs); a failing upload turns a success into a failure;
the cache only ever warns. A canceled job or a lost pod moves nothing out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

from kuberunner.executor.results import Observation, Success, decide
from kuberunner.executor.strategy import Exited, JobContext, Lost, StageEnd, Stopped, Strategy
from kuberunner.shell import transfers as shell
from kuberunner.shell.transfers import Transfers

AFTER_SCRIPT_STAGES = (
    "archive_cache",
    "archive_cache_on_failure",
    "upload_artifacts_on_success",
    "upload_artifacts_on_failure",
)
"""The stages after the script (and after_script), both endings' variants."""
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
    if transfers is None:
        return seen
    return await run_after_stages(job, strategy, seen, present=frozenset(present))


def stages_after_due(seen: Observation, present: frozenset[str]) -> tuple[str, ...]:
    """The stages after the script that `seen` calls for, in order: none after a cancel or a lost pod."""
    if seen.canceled or seen.system_error is not None:
        return ()
    if isinstance(decide(seen), Success):
        order = ("archive_cache", "upload_artifacts_on_success")
    else:
        order = ("archive_cache_on_failure", "upload_artifacts_on_failure")
    return tuple(stage for stage in order if stage in present)


async def run_after_stages(
    job: JobContext,
    strategy: Strategy,
    seen: Observation,
    *,
    present: frozenset[str],
    taken_over: tuple[str, bool] | None = None,
    take_over: Callable[[str], None] | None = None,
) -> Observation:
    """`run_stages_after` for a fresh job and an adopted one: `taken_over` is the (stage, ended) the
    adopted job stood at (its section already open unless ended; stages before it are done), and
    `take_over(stage)` lets the strategy reuse a stage's nonce and token before it runs."""
    due = stages_after_due(seen, present)
    opened = None
    if taken_over is not None and taken_over[0] in due:
        stage, ended = taken_over
        due = due[due.index(stage) + (1 if ended else 0) :]
        opened = None if ended else stage
    deadline = asyncio.get_running_loop().time() + UPLOAD_TIMEOUT
    for stage in due:
        if take_over is not None:
            take_over(stage)
        with _section(job, stage, opened=stage == opened):
            end = await strategy.run_stage(job, stage, deadline=deadline)
        after = _after(job, stage, end, seen, upload=stage.startswith("upload_artifacts_"))
        job.state.outcome = after or seen
        job.report("stage_ended")
        if after is not None:
            return after
    return seen


def _after(
    job: JobContext, stage: str, end: StageEnd, seen: Observation, *, upload: bool
) -> Observation | None:
    """How one stage after the script changes the job's ending; None: it does not, go on."""
    match end:
        case Exited(exit_code=0):
            return None
        case Exited(exit_code=code) if upload:
            return Observation((*seen.exit_codes, code), timed_out_after=seen.timed_out_after)
        case Exited():
            return None
        case Lost(reason=reason):
            return Observation(seen.exit_codes, system_error=reason)
        case Stopped(canceled=True):
            return Observation(seen.exit_codes, canceled=True)
        case Stopped():
            job.trace.runner_line(f"WARNING: {stage} timed out", level="warning")
            if upload:
                return Observation(seen.exit_codes, system_error="uploading the artifacts timed out")
            return None
    raise AssertionError(f"unknown stage end {end!r}")


@contextlib.contextmanager
def _section(job: JobContext, stage: str, *, opened: bool = False) -> Iterator[None]:
    if not opened:
        job.trace.section_start(stage, job.plan.header(stage))
    try:
        yield
    finally:
        job.trace.section_end(stage)
