"""Presigned S3 URLs for the cache, from `[runners.cache]`: the helper GETs and PUTs them with curl.

AWS Signature Version 4 in query-string form (the signature covers the method, the object and the
host; the payload is UNSIGNED-PAYLOAD), as any S3-compatible server accepts it. The secret key never
leaves the runner: the pod gets URLs that open one object, for one method, for a limited time.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Callable
from urllib.parse import quote

from kuberunner.config import CacheS3, RunnerEntry
from kuberunner.executor.object_server import ObjectServer

URL_LIFETIME = 6 * 3600
"""Seconds a presigned URL stays valid: long enough for a long job, far below S3's 7-day limit."""


def cache_urls(
    runner: RunnerEntry, project_id: int, local: ObjectServer | None = None
) -> Callable[[str], tuple[str, str] | None]:
    """A cache key → presigned (GET, PUT) URLs of its object; None when no cache is configured.
    `local` serves the `local` type (and an unset type, when the runner started one)."""
    settings = runner.cache
    kind = settings.type or ("local" if local is not None else "")
    if kind == "" or (kind == "local" and local is None):
        return lambda key: None
    prefix = [settings.path] if settings.path else []
    if not settings.shared:
        prefix += ["runner", runner.token[:8] or "runner"]

    def urls(key: str) -> tuple[str, str] | None:
        name = "/".join([*prefix, "project", str(project_id), key, "cache.zip"])
        if local is not None and kind == "local":
            return local.urls(name)
        return presign(settings.s3, "GET", name), presign(settings.s3, "PUT", name)

    return urls


def presign(
    s3: CacheS3,
    method: str,
    object_name: str,
    *,
    now: datetime.datetime | None = None,
    expires: int = URL_LIFETIME,
) -> str:
    """A path-style URL (`/bucket/object`), which every S3-compatible server serves."""
    path = "/" + _encode(s3.bucket_name) + "/" + "/".join(_encode(part) for part in object_name.split("/"))
    moment = now or datetime.datetime.now(datetime.UTC)
    return signed_url(s3, method, path, moment=moment, expires=expires)


def signed_url(s3: CacheS3, method: str, path: str, *, moment: datetime.datetime, expires: int) -> str:
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    scope = f"{day}/{s3.bucket_location}/s3/aws4_request"
    host = s3.server_address
    query = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{s3.access_key}/{scope}",
        "X-Amz-Date": stamp,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": "host",
    }
    canonical_query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(query.items()))
    canonical = "\n".join([method, path, canonical_query, f"host:{host}", "", "host", "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + s3.secret_key).encode()
    for part in (day, s3.bucket_location, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    scheme = "http" if s3.insecure else "https"
    return f"{scheme}://{host}{path}?{canonical_query}&X-Amz-Signature={signature}"


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")
