"""The job GitLab hands out on `POST /jobs/request`, parsed into typed values (sans-I/O).

Only the fields kuberunner acts on are kept; unknown fields are ignored, as newer GitLab versions
only add fields. A payload that breaks the shape we rely on is a `PayloadError` naming the field, so
the runner can fail that one job as a system failure and carry on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

When = Literal["on_success", "on_failure", "always"]


class PayloadError(Exception):
    """The job payload does not have the shape of GitLab's job response."""


@dataclass(frozen=True, slots=True)
class Variable:
    key: str
    value: str
    public: bool = True
    masked: bool = False
    file: bool = False
    raw: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    script: tuple[str, ...]
    timeout: int | None
    when: When
    allow_failure: bool


@dataclass(frozen=True, slots=True)
class GitInfo:
    repo_url: str
    ref: str
    sha: str
    before_sha: str = ""
    ref_type: str = "branch"
    refspecs: tuple[str, ...] = ()
    depth: int = 0


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    alias: str = ""


@dataclass(frozen=True, slots=True)
class JobPayload:
    id: int
    token: str
    name: str
    stage: str
    project_name: str
    project_id: int
    pipeline_id: int
    git: GitInfo
    timeout: int | None
    """`runner_info.timeout`: the job timeout in seconds, enforced by the runner."""
    variables: tuple[Variable, ...]
    steps: tuple[Step, ...]
    image: str | None
    services: tuple[Service, ...]
    failure_reasons: tuple[str, ...]
    """`features.failure_reasons`: what this server accepts in a final update."""
    ignored: tuple[str, ...]
    """Non-empty keywords we received but do not support (artifacts, cache, …), for a warning."""

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)


def _fail(where: str, expected: str) -> PayloadError:
    return PayloadError(f"job payload: {where!r} must be {expected}")


def _get(obj: Mapping[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    value = obj.get(key, default)
    if value is None:
        return default
    if kind is int and isinstance(value, bool):
        raise _fail(f"{where}{key}", "an integer")
    if not isinstance(value, kind):
        raise _fail(f"{where}{key}", _KINDS[kind])
    return value


_KINDS: dict[type, str] = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
                           dict: "an object"}


def _strings(values: list[Any], where: str) -> tuple[str, ...]:
    if not all(isinstance(v, str) for v in values):
        raise _fail(where, "a list of strings")
    return tuple(values)


def parse_job(data: Any) -> JobPayload:
    """Parse the decoded JSON of a 201 reply to `POST /jobs/request`."""
    if not isinstance(data, dict):
        raise PayloadError("job payload: expected a JSON object")
    job_id = _get(data, "id", int, "")
    token = _get(data, "token", str, "")
    if job_id is None or not token:
        raise PayloadError("job payload: 'id' and 'token' are required")
    info = _get(data, "job_info", dict, "", {})
    runner_info = _get(data, "runner_info", dict, "", {})
    features = _get(data, "features", dict, "", {})
    image = _get(data, "image", dict, "", {})
    image_name = _get(image, "name", str, "image.") or None
    return JobPayload(
        id=job_id,
        token=token,
        name=_get(info, "name", str, "job_info.", "job"),
        stage=_get(info, "stage", str, "job_info.", ""),
        project_name=_get(info, "project_name", str, "job_info.", "project"),
        project_id=_get(info, "project_id", int, "job_info.", 0),
        pipeline_id=_get(info, "pipeline_id", int, "job_info.", 0),
        git=_git(_get(data, "git_info", dict, "", {})),
        timeout=_get(runner_info, "timeout", int, "runner_info."),
        variables=tuple(_variable(v, i) for i, v in enumerate(_get(data, "variables", list, "", []))),
        steps=tuple(_step(s, i) for i, s in enumerate(_get(data, "steps", list, "", []))),
        image=image_name,
        services=tuple(_service(s, i) for i, s in enumerate(_get(data, "services", list, "", []))),
        failure_reasons=_strings(
            _get(features, "failure_reasons", list, "features.", []), "features.failure_reasons"
        ),
        ignored=tuple(key for key in ("artifacts", "cache", "dependencies", "hooks") if data.get(key)),
    )


def _git(obj: Mapping[str, Any]) -> GitInfo:
    where = "git_info."
    return GitInfo(
        repo_url=_get(obj, "repo_url", str, where, ""),
        ref=_get(obj, "ref", str, where, ""),
        sha=_get(obj, "sha", str, where, ""),
        before_sha=_get(obj, "before_sha", str, where, ""),
        ref_type=_get(obj, "ref_type", str, where, "branch"),
        refspecs=_strings(_get(obj, "refspecs", list, where, []), f"{where}refspecs"),
        depth=_get(obj, "depth", int, where, 0),
    )


def _variable(obj: Any, index: int) -> Variable:
    where = f"variables[{index}]."
    if not isinstance(obj, dict):
        raise _fail(f"variables[{index}]", "an object")
    key = _get(obj, "key", str, where)
    if not key:
        raise _fail(f"{where}key", "a non-empty string")
    return Variable(
        key=key,
        value=_get(obj, "value", str, where, ""),
        public=_get(obj, "public", bool, where, True),
        masked=_get(obj, "masked", bool, where, False),
        file=_get(obj, "file", bool, where, False),
        raw=_get(obj, "raw", bool, where, False),
    )


_WHEN: dict[str, When] = {"": "on_success", "on_success": "on_success", "on_failure": "on_failure",
                          "always": "always"}


def _step(obj: Any, index: int) -> Step:
    where = f"steps[{index}]."
    if not isinstance(obj, dict):
        raise _fail(f"steps[{index}]", "an object")
    when = _get(obj, "when", str, where, "")
    if when not in _WHEN:
        raise _fail(f"{where}when", "on_success, on_failure or always")
    return Step(
        name=_get(obj, "name", str, where, ""),
        script=_strings(_get(obj, "script", list, where, []), f"{where}script"),
        timeout=_get(obj, "timeout", int, where),
        when=_WHEN[when],
        allow_failure=_get(obj, "allow_failure", bool, where, False),
    )


def _service(obj: Any, index: int) -> Service:
    where = f"services[{index}]."
    if not isinstance(obj, dict):
        raise _fail(f"services[{index}]", "an object")
    return Service(name=_get(obj, "name", str, where, ""), alias=_get(obj, "alias", str, where, ""))
