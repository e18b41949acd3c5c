"""The job GitLab hands out on `POST /jobs/request`, parsed into typed values (sans-I/O).

Only the fields kuberunner acts on are kept; unknown fields are ignored, as newer GitLab versions
only add fields. A payload that breaks the shape we rely on is a `PayloadError` naming the field, so
the runner can fail that one job as a system failure and carry on.
"""

from __future__ import annotations

import json
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
    """One alias, or several separated by commas or spaces (GitLab's `alias`)."""
    entrypoint: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    ports: tuple[int, ...] = ()
    pull_policy: tuple[str, ...] = ()
    """As GitLab sends it (`always`, `if-not-present`, `never`); judged by translate."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """One entry of the payload's `artifacts`: an archive, or a report (junit, dotenv, …)."""

    name: str
    paths: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    untracked: bool = False
    when: When = "on_success"
    artifact_type: str = "archive"
    artifact_format: str = "zip"
    expire_in: str = ""


@dataclass(frozen=True, slots=True)
class Dependency:
    """A job whose artifacts this one downloads before its script, with that job's own token."""

    id: int
    name: str
    token: str
    has_artifacts: bool
    """GitLab sends `artifacts_file` only when the job has an archive to download."""


@dataclass(frozen=True, slots=True)
class Cache:
    key: str
    paths: tuple[str, ...]
    untracked: bool = False
    policy: str = "pull-push"
    when: When = "on_success"
    fallback_keys: tuple[str, ...] = ()


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
    """Non-empty keywords we received but do not support (hooks, …), for a warning."""
    artifacts: tuple[Artifact, ...] = ()
    dependencies: tuple[Dependency, ...] = ()
    cache: tuple[Cache, ...] = ()
    image_pull_policy: tuple[str, ...] = ()
    """`image.pull_policy` as GitLab sends it (`always`, `if-not-present`, `never`); judged by translate."""

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


_KINDS: dict[type, str] = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}


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
        image_pull_policy=_strings(_get(image, "pull_policy", list, "image.", []), "image.pull_policy"),
        services=tuple(_service(s, i) for i, s in enumerate(_get(data, "services", list, "", []))),
        failure_reasons=_strings(
            _get(features, "failure_reasons", list, "features.", []), "features.failure_reasons"
        ),
        ignored=tuple(key for key in ("hooks",) if data.get(key)),
        artifacts=tuple(_artifact(a, i) for i, a in enumerate(_get(data, "artifacts", list, "", []))),
        dependencies=tuple(_dependency(d, i) for i, d in enumerate(_get(data, "dependencies", list, "", []))),
        cache=tuple(_cache(c, i) for i, c in enumerate(_get(data, "cache", list, "", []))),
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


_WHEN: dict[str, When] = {
    "": "on_success",
    "on_success": "on_success",
    "on_failure": "on_failure",
    "always": "always",
}


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
    item = _object(obj, f"services[{index}]")
    ports = []
    for n, port in enumerate(_get(item, "ports", list, where, [])):
        number = port.get("number") if isinstance(port, dict) else None
        if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
            raise _fail(f"{where}ports[{n}].number", "a port number")
        ports.append(number)
    variables = []
    for n, variable in enumerate(_get(item, "variables", list, where, [])):
        if not isinstance(variable, dict) or not isinstance(variable.get("key"), str):
            raise _fail(f"{where}variables[{n}]", "an object with a key")
        variables.append((variable["key"], str(variable.get("value", ""))))
    return Service(
        name=_get(item, "name", str, where, ""),
        alias=_get(item, "alias", str, where, ""),
        entrypoint=_strings(_get(item, "entrypoint", list, where, []), f"{where}entrypoint"),
        command=_strings(_get(item, "command", list, where, []), f"{where}command"),
        variables=tuple(variables),
        ports=tuple(ports),
        pull_policy=_strings(_get(item, "pull_policy", list, where, []), f"{where}pull_policy"),
    )


def _object(obj: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(where, "an object")
    return obj


def _when(obj: Mapping[str, Any], where: str) -> When:
    when = _get(obj, "when", str, where, "")
    if when not in _WHEN:
        raise _fail(f"{where}when", "on_success, on_failure or always")
    return _WHEN[when]


def _artifact(obj: Any, index: int) -> Artifact:
    where = f"artifacts[{index}]."
    item = _object(obj, f"artifacts[{index}]")
    return Artifact(
        name=_get(item, "name", str, where, ""),
        paths=_strings(_get(item, "paths", list, where, []), f"{where}paths"),
        exclude=_strings(_get(item, "exclude", list, where, []), f"{where}exclude"),
        untracked=_get(item, "untracked", bool, where, False),
        when=_when(item, where),
        artifact_type=_get(item, "artifact_type", str, where, "") or "archive",
        artifact_format=_get(item, "artifact_format", str, where, "") or "zip",
        expire_in=_get(item, "expire_in", str, where, ""),
    )


def _dependency(obj: Any, index: int) -> Dependency:
    where = f"dependencies[{index}]."
    item = _object(obj, f"dependencies[{index}]")
    dep_id = _get(item, "id", int, where)
    if dep_id is None:
        raise _fail(f"{where}id", "an integer")
    files = _get(item, "artifacts_file", dict, where, {})
    return Dependency(
        id=dep_id,
        name=_get(item, "name", str, where, ""),
        token=_get(item, "token", str, where, ""),
        has_artifacts=bool(_get(files, "filename", str, f"{where}artifacts_file.", "")),
    )


def _cache(obj: Any, index: int) -> Cache:
    where = f"cache[{index}]."
    item = _object(obj, f"cache[{index}]")
    return Cache(
        key=_get(item, "key", str, where, ""),
        paths=_strings(_get(item, "paths", list, where, []), f"{where}paths"),
        untracked=_get(item, "untracked", bool, where, False),
        policy=_get(item, "policy", str, where, "") or "pull-push",
        when=_when(item, where),
        fallback_keys=_strings(_get(item, "fallback_keys", list, where, []), f"{where}fallback_keys"),
    )


def recover_id_and_token(body: bytes) -> tuple[int | None, str | None]:
    """The top-level `id` and `token` of a payload that is not valid JSON as a whole (cut short, or
    broken further on), read field by field from its start: enough to tell GitLab the job failed."""
    text = body.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    found: dict[str, Any] = {}
    pos = _skip(text, 0)
    if not text.startswith("{", pos):
        return None, None
    pos += 1
    while "id" not in found or "token" not in found:
        try:
            key, pos = decoder.raw_decode(text, _skip(text, pos))
            pos = _skip(text, pos)
            if not isinstance(key, str) or not text.startswith(":", pos):
                break
            value, pos = decoder.raw_decode(text, _skip(text, pos + 1))
        except ValueError:
            break
        found.setdefault(key, value)
        pos = _skip(text, pos)
        if not text.startswith(",", pos):
            break
        pos += 1
    job_id, token = found.get("id"), found.get("token")
    return (
        job_id if isinstance(job_id, int) and not isinstance(job_id, bool) else None,
        token if isinstance(token, str) and token else None,
    )


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
