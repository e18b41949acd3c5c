"""A GitLab job payload turned into the executor's `JobRequest`, plus what the trace must mask.

The executor knows nothing of GitLab: this is where the payload's steps, variables, image, timeout
and git info become a `JobSpec` and a `GitSource`. What the executor cannot honour is an
`Untranslatable` naming the reason (the job then fails as a system failure); what it merely
ignores becomes a warning line in the trace, as GitLab Runner does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from kuberunner.config import RunnerEntry
from kuberunner.executor.job import GitSource, JobRequest, base_variables
from kuberunner.gitlab.payload import JobPayload
from kuberunner.job.spec import JobSpec
from kuberunner.local import legacy_exec_wanted
from kuberunner.shell.quoting import is_variable_name

_IMAGE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._:/@-]*")
_STRATEGIES = ("clone", "fetch", "none")


class Untranslatable(Exception):
    """The job asks for something the executor cannot do; str() is one line for the trace and log."""


@dataclass(frozen=True, slots=True)
class Translated:
    request: JobRequest
    masked: tuple[str, ...]
    """Values the trace replaces with [MASKED]: every masked variable, trimmed, non-empty."""
    warnings: tuple[str, ...]


def translate(payload: JobPayload, *, runner: RunnerEntry, default_timeout: float) -> Translated:
    warnings: list[str] = []
    script_step = payload.step("script")
    if script_step is None or not script_step.script:
        raise Untranslatable("the job has no script step")
    after = payload.step("after_script")
    for step in payload.steps:
        if step.name not in ("script", "after_script"):
            warnings.append(f"step {step.name!r} is not supported yet and is ignored")
    if payload.services:
        warnings.append("services are not supported yet and are ignored")
    warnings += [f"keyword {key!r} is not supported yet and is ignored" for key in payload.ignored]
    if payload.image is not None and not _IMAGE.fullmatch(payload.image):
        raise Untranslatable(f"image {payload.image!r} is not a valid image reference")

    sent: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for variable in payload.variables:
        if not is_variable_name(variable.key):
            raise Untranslatable(f"variable {variable.key!r} is not a valid variable name")
        if variable.file:
            files[variable.key] = variable.value.encode()
            sent.pop(variable.key, None)
        else:
            sent[variable.key] = variable.value
            files.pop(variable.key, None)
    project_path = sent.get("CI_PROJECT_PATH") or payload.project_name or "project"
    project_dir = "/builds/" + "/".join(p for p in project_path.split("/") if p not in ("", ".", ".."))
    predefined = base_variables(project_dir=project_dir)
    runner_env = tuple((k, v) for k, _, v in (item.partition("=") for item in runner.environment))
    variables = (*predefined, *sent.items(), *runner_env)
    spec = JobSpec(
        name=payload.name,
        script=script_step.script,
        after_script=after.script if after is not None else (),
        image=payload.image,
        variables=(),
        timeout_seconds=payload.timeout,
    )
    request = JobRequest(
        job=spec,
        job_id=str(payload.id),
        variables=variables,
        project_dir=project_dir,
        project_archive=None,
        timeout=float(payload.timeout or default_timeout),
        legacy_exec=legacy_exec_wanted(
            environ=dict(os.environ), variables=variables, feature_flags=runner.feature_flags
        ),
        git=_git(payload, dict(variables)),
        variable_files=tuple(files.items()),
        after_script_timeout=float(after.timeout) if after is not None and after.timeout else None,
        after_script_when=after.when if after is not None else "always",
    )
    masked = {v.value.strip() for v in payload.variables if v.masked and v.value.strip()}
    masked.add(payload.token)
    return Translated(request, tuple(sorted(masked)), tuple(warnings))


def _git(payload: JobPayload, variables: dict[str, str]) -> GitSource | None:
    strategy = variables.get("GIT_STRATEGY", "") or ("fetch" if payload.git.repo_url else "none")
    if strategy not in _STRATEGIES:
        raise Untranslatable(f"GIT_STRATEGY {strategy!r} is not one of {', '.join(_STRATEGIES)}")
    if strategy == "none":
        return GitSource(repo_url="", sha="", ref="", strategy="none")
    info = payload.git
    if not info.repo_url or not info.sha:
        raise Untranslatable("the job has no git_info.repo_url or sha to fetch")
    depth_text = variables.get("GIT_DEPTH", "")
    try:
        depth = int(depth_text) if depth_text else info.depth
    except ValueError as exc:
        raise Untranslatable(f"GIT_DEPTH {depth_text!r} is not a number") from exc
    return GitSource(
        repo_url=info.repo_url,
        sha=info.sha,
        ref=info.ref,
        ref_type=info.ref_type,
        depth=max(depth, 0),
        strategy=strategy,
        checkout=variables.get("GIT_CHECKOUT", "true").lower() not in ("false", "0", "no"),
    )
