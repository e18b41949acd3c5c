"""The payload's artifacts, dependencies and cache as the helper's `Transfers` (sans-I/O).

Paths and names are expanded with the job's variables, as GitLab Runner does; a path that leaves
the project is dropped with a warning. The cache's presigned URLs come from `cache_urls`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kuberunner.gitlab.payload import JobPayload
from kuberunner.job.variables_expand import expand
from kuberunner.shell.globs import project_relative
from kuberunner.shell.transfers import CacheEntry, Download, Transfers, Upload, sanitized_key

CacheUrls = Callable[[str], tuple[str, str] | None]
"""A cache key → its presigned (GET, PUT) URLs; None: no cache is configured."""


def plan_transfers(
    payload: JobPayload,
    *,
    api_url: str,
    variables: Mapping[str, str],
    project_dir: str,
    ca_file: str,
    cache_urls: CacheUrls,
    warnings: list[str],
) -> Transfers | None:
    def paths(patterns: tuple[str, ...], what: str) -> tuple[str, ...]:
        kept = []
        for pattern in patterns:
            expanded = expand(pattern, variables)
            relative = project_relative(expanded, project_dir) if expanded else None
            if relative is None:
                warnings.append(
                    f"{what} path {expanded!r} is not a subpath of the project directory; ignored"
                )
            else:
                kept.append(relative)
        return tuple(kept)

    uploads = tuple(
        Upload(
            name=expand(a.name, variables),
            paths=paths(a.paths, "artifacts"),
            exclude=paths(a.exclude, "artifacts:exclude"),
            untracked=a.untracked,
            when=a.when,
            artifact_type=a.artifact_type,
            artifact_format=a.artifact_format,
            expire_in=a.expire_in,
        )
        for a in payload.artifacts
    )
    uploads = tuple(u for u in uploads if u.paths or u.untracked)
    downloads = tuple(
        Download(job_id=d.id, name=d.name, token=d.token) for d in payload.dependencies if d.has_artifacts
    )
    caches = []
    for cache in payload.cache:
        key = sanitized_key(expand(cache.key, variables) or "default")
        if key is None:
            warnings.append(f"cache key {cache.key!r} is not usable; the cache is skipped")
            continue
        urls = cache_urls(key)
        if urls is None:
            warnings.append("no cache is configured ([runners.cache]); the cache is skipped")
            continue
        fallbacks = [sanitized_key(expand(k, variables)) for k in cache.fallback_keys]
        gets = (urls[0], *(u[0] for k in fallbacks if k and (u := cache_urls(k)) is not None))
        caches.append(
            CacheEntry(
                key=key,
                paths=paths(cache.paths, "cache"),
                untracked=cache.untracked,
                pull=cache.policy in ("pull", "pull-push"),
                push=cache.policy in ("push", "pull-push"),
                when=cache.when,
                get_urls=gets,
                put_url=urls[1],
            )
        )
    if not (uploads or downloads or caches):
        return None
    return Transfers(
        api_url=api_url.rstrip("/"),
        job_id=payload.id,
        job_token=payload.token,
        uploads=uploads,
        downloads=downloads,
        caches=tuple(caches),
        ca_file=ca_file,
    )
