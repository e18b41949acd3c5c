"""`exec`'s artifacts, cache and services: a job file's keywords as the helper stages' `Transfers`.

The runner's own `ObjectServer` stands in for GitLab (the artifacts endpoints, with a token it
issues per job) and for S3 (the cache, with presigned URLs), so a local pipeline runs the same
stages a GitLab job does. The pods reach the server on loopback: the embedded cluster's network is
this machine's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kuberunner.executor.object_server import ObjectServer
from kuberunner.executor.services import ServiceContainer, aliases_for
from kuberunner.job import transfer_keywords as keywords
from kuberunner.job.variables_expand import expand
from kuberunner.shell.globs import project_relative
from kuberunner.shell.transfers import CacheEntry, Download, Transfers, Upload, When, sanitized_key


@dataclass(frozen=True, slots=True)
class ExecDependency:
    """An earlier job of the same `exec` whose artifacts this one downloads."""

    job_id: int
    name: str


def exec_transfers(
    spec: keywords.Transfers | None,
    *,
    server: ObjectServer | None,
    job_id: int,
    dependencies: Sequence[ExecDependency],
    variables: Mapping[str, str],
    project_dir: str,
    project_root: Path,
    warnings: list[str],
) -> tuple[Transfers | None, tuple[ServiceContainer, ...]]:
    spec = spec or keywords.Transfers()
    services = tuple(
        ServiceContainer(
            image=expand(s.name, variables),
            aliases=aliases_for(expand(s.name, variables), expand(s.alias, variables)),
            command=s.entrypoint,
            args=s.command,
            env=tuple((k, expand(v, variables)) for k, v in s.variables),
            pull_policy=s.pull_policy,
        )
        for s in spec.services
    )
    if server is None:
        return None, services

    def paths(patterns: Sequence[str], what: str) -> tuple[str, ...]:
        kept = []
        for pattern in patterns:
            relative = project_relative(expand(pattern, variables), project_dir)
            if relative is None:
                warnings.append(f"{what} path {pattern!r} is not a subpath of the project directory; ignored")
            else:
                kept.append(relative)
        return tuple(kept)

    uploads: list[Upload] = []
    artifacts = spec.artifacts
    for what, untracked in (
        ("artifacts", artifacts is not None and artifacts.untracked),
        ("cache", any(c.untracked for c in spec.caches)),
    ):
        if untracked:
            # The project reaches the pod as an archive, without .git: git cannot say what it tracks.
            warnings.append(
                f"{what}:untracked collects nothing under exec (the pod's project is not a git clone)"
            )
    if artifacts is not None:
        when = _when(artifacts.when)
        kept = paths(artifacts.paths, "artifacts")
        if kept or artifacts.untracked:
            uploads.append(
                Upload(
                    name=expand(artifacts.name, variables) or "artifacts",
                    paths=kept,
                    exclude=paths(artifacts.exclude, "artifacts:exclude"),
                    untracked=artifacts.untracked,
                    when=when,
                    expire_in=artifacts.expire_in,
                )
            )
        for kind, report_paths in artifacts.reports:
            uploads.append(
                Upload(
                    name=kind,
                    paths=paths(report_paths, f"artifacts:reports:{kind}"),
                    when="always",
                    artifact_type=kind,
                    artifact_format="gzip",
                )
            )
    caches = []
    for cache in spec.caches:
        key = sanitized_key(_cache_key(cache, variables, project_root))
        if key is None:
            warnings.append(f"cache key {cache.key!r} is not usable; the cache is skipped")
            continue
        fallbacks = [k for k in (sanitized_key(expand(f, variables)) for f in cache.fallback_keys) if k]
        get, put = server.urls(f"cache/{key}/cache.zip")
        caches.append(
            CacheEntry(
                key=key,
                paths=paths(cache.paths, "cache"),
                untracked=cache.untracked,
                pull=cache.policy in ("pull", "pull-push"),
                push=cache.policy in ("push", "pull-push"),
                when=_when(cache.when),
                get_urls=(get, *(server.urls(f"cache/{k}/cache.zip")[0] for k in fallbacks)),
                put_url=put,
            )
        )
    downloads = tuple(Download(d.job_id, d.name, server.job_token(d.job_id)) for d in dependencies)
    if not (uploads or downloads or caches):
        return None, services
    transfers = Transfers(
        api_url=server.base_url,
        job_id=job_id,
        job_token=server.job_token(job_id),
        uploads=tuple(uploads),
        downloads=downloads,
        caches=tuple(caches),
    )
    return transfers, services


def _when(text: str) -> When:
    return "on_failure" if text == "on_failure" else "always" if text == "always" else "on_success"


def _cache_key(cache: keywords.Cache, variables: Mapping[str, str], project_root: Path) -> str:
    """`key:files` as GitLab derives it: the prefix, then a digest of the files (here: their contents,
    the local checkout having no commit per file), else `default`."""
    if not cache.key_files:
        return expand(cache.key, variables)
    digest = hashlib.sha256()
    for name in cache.key_files:
        digest.update(name.encode() + b"\0")
        if name.startswith("/") or ".." in name.split("/"):
            continue  # only the project's own files make a key
        try:
            digest.update((project_root / name).read_bytes())
        except OSError:
            digest.update(b"\0missing")
    prefix = expand(cache.key_prefix, variables)
    return (f"{prefix}-" if prefix else "") + digest.hexdigest()[:40]
