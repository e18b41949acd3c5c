"""A GitLab job payload turned into the executor's `JobRequest`, plus what the trace must mask.

The executor knows nothing of GitLab: this is where the payload's steps, variables, image, timeout
and git info become a `JobSpec` and a `GitSource`. What the executor cannot honour is an
`Untranslatable` naming the reason (the job then fails as a system failure); what it merely
ignores becomes a warning line in the trace, as GitLab Runner does.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from kuberunner.config import RunnerEntry
from kuberunner.executor.job import GIT_CA, GitSource, JobRequest, base_variables
from kuberunner.executor.object_server import ObjectServer
from kuberunner.executor.services import ServiceContainer, aliases_for
from kuberunner.gitlab.payload import JobPayload
from kuberunner.job.spec import JobSpec
from kuberunner.job.variables import variable_problem
from kuberunner.job.variables_expand import expand, expand_values
from kuberunner.local import legacy_exec_wanted
from kuberunner.podconfig.options import PULL_POLICIES
from kuberunner.runner.cache_urls import cache_urls
from kuberunner.runner.transfer_plan import plan_transfers
from kuberunner.shell.layout import PodPaths

_IMAGE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._:/@-]*")
_STRATEGIES = ("clone", "fetch", "none")
_SERVER = re.compile(r"[A-Za-z0-9.\[\]:_-]+")


class Untranslatable(Exception):
    """The job asks for something the executor cannot do; str() is one line for the trace and log."""


@dataclass(frozen=True, slots=True)
class Translated:
    request: JobRequest
    masked: tuple[str, ...]
    """Values the trace replaces with [MASKED]: every masked variable, trimmed, non-empty."""
    warnings: tuple[str, ...]


def translate(
    payload: JobPayload,
    *,
    runner: RunnerEntry,
    default_timeout: float,
    local_cache: ObjectServer | None = None,
) -> Translated:
    warnings: list[str] = []
    script_step = payload.step("script")
    if script_step is None or not script_step.script:
        raise Untranslatable("the job has no script step")
    after = payload.step("after_script")
    for step in payload.steps:
        if step.name not in ("script", "after_script"):
            warnings.append(f"step {step.name!r} is not supported yet and is ignored")
    warnings += [f"keyword {key!r} is not supported yet and is ignored" for key in payload.ignored]

    sent: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for variable in payload.variables:
        if (problem := variable_problem(variable.key, variable.value)) is not None:
            raise Untranslatable(problem)
        if variable.file:
            files[variable.key] = variable.value.encode()
            sent.pop(variable.key, None)
        else:
            sent[variable.key] = variable.value
            files.pop(variable.key, None)
    ca_pem = _ca_bundle(runner)
    if ca_pem and "CI_SERVER_TLS_CA_FILE" not in sent:
        files.setdefault("CI_SERVER_TLS_CA_FILE", ca_pem)  # as GitLab Runner gives it to the job
    project_path = sent.get("CI_PROJECT_PATH") or payload.project_name or "project"
    project_dir = "/builds/" + "/".join(p for p in project_path.split("/") if p not in ("", ".", ".."))
    predefined = base_variables(project_dir=project_dir)
    runner_env = tuple((k, v) for k, _, v in (item.partition("=") for item in runner.environment))
    raw = frozenset(v.key for v in payload.variables if v.raw)
    variables = expand_values((*predefined, *sent.items(), *runner_env), raw=raw)
    values = dict(variables)
    image = expand(payload.image, values) if payload.image is not None else None
    if image is not None and not _IMAGE.fullmatch(image):
        raise Untranslatable(f"image {image!r} is not a valid image reference")
    spec = JobSpec(
        name=payload.name,
        script=script_step.script,
        after_script=after.script if after is not None else (),
        image=image,
        image_pull_policy=_pull_policies(payload.image_pull_policy, "image"),
        variables=(),
        timeout_seconds=payload.timeout,
    )
    git = _git(payload, values, ca_pem)
    transfers = plan_transfers(
        payload,
        api_url=runner.url,
        variables=values,
        project_dir=project_dir,
        ca_file=PodPaths().script(GIT_CA) if git is not None and git.ca_pem else "",
        cache_urls=cache_urls(runner, payload.project_id, local_cache),
        warnings=warnings,
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
        git=git,
        variable_files=tuple(files.items()),
        after_script_timeout=float(after.timeout) if after is not None and after.timeout else None,
        after_script_when=after.when if after is not None else "always",
        transfers=transfers,
        services=_services(payload, values),
        services_timeout=runner.kubernetes.wait_for_services_timeout,
    )
    masked = {v.value.strip() for v in payload.variables if v.masked and v.value.strip()}
    masked.add(payload.token)
    return Translated(request, tuple(sorted(masked)), tuple(warnings))


def _services(payload: JobPayload, values: dict[str, str]) -> tuple[ServiceContainer, ...]:
    found = []
    for index, service in enumerate(payload.services):
        image = expand(service.name, values)
        if not _IMAGE.fullmatch(image):
            raise Untranslatable(f"services[{index}]: {image!r} is not a valid image reference")
        found.append(
            ServiceContainer(
                image=image,
                aliases=aliases_for(image, expand(service.alias, values)),
                command=service.entrypoint,
                args=service.command,
                env=tuple((k, expand(v, values)) for k, v in service.variables),
                ports=service.ports,
                pull_policy=_pull_policies(service.pull_policy, f"services[{index}]"),
            )
        )
    return tuple(found)


def _git(payload: JobPayload, variables: dict[str, str], ca_pem: bytes) -> GitSource | None:
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
    repo_url, auth_header = _credentials_apart(info.repo_url)
    return GitSource(
        repo_url=repo_url,
        auth_header=auth_header,
        ca_pem=ca_pem,
        sha=info.sha,
        ref=info.ref,
        ref_type=info.ref_type,
        depth=max(depth, 0),
        strategy=strategy,
        checkout=variables.get("GIT_CHECKOUT", "true").lower() not in ("false", "0", "no"),
    )


def _ca_bundle(runner: RunnerEntry) -> bytes:
    if not runner.tls_ca_file:
        return b""
    try:
        return Path(runner.tls_ca_file).read_bytes()
    except OSError as exc:
        raise Untranslatable(f"tls-ca-file {runner.tls_ca_file}: {exc.strerror or exc}") from None


def _credentials_apart(url: str) -> tuple[str, str]:
    """GitLab's `https://gitlab-ci-token:TOKEN@host/p.git` as a URL without the token and the HTTP
    header that carries it: a token in the URL shows in git-remote-http's argv and in .git/config."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        server = parts.netloc.rpartition("@")[2]
    except ValueError as exc:
        raise Untranslatable(f"git_info.repo_url is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host or not _SERVER.fullmatch(server):
        raise Untranslatable("git_info.repo_url must be an http(s) URL with a plain host name")
    clean = urlunsplit((parts.scheme, server, parts.path, parts.query, parts.fragment))
    if parts.username is None:
        return clean, ""
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return clean, "Authorization: Basic " + base64.b64encode(pair).decode()


def _pull_policies(sent: tuple[str, ...], whose: str) -> tuple[str, ...]:
    """GitLab's `pull_policy` names (of `image` or a service) as Kubernetes ones, in order, each once."""
    unknown = [name for name in sent if name not in PULL_POLICIES]
    if unknown:
        raise Untranslatable(
            f"{whose} pull_policy {unknown[0]!r} is not one of always, if-not-present, never"
        )
    return tuple(dict.fromkeys(PULL_POLICIES[name] for name in sent))
