"""A directory served over HTTP with presigned URLs: the `local` cache, for clusters on this machine.

It also answers GitLab's two artifacts endpoints (`POST` and `GET /api/v4/jobs/:id/artifacts`, with
the `JOB-TOKEN` it issued for that job), so `exec` moves artifacts between its jobs with the very
helper stages a GitLab job uses.

The helper's cache stages only know presigned GET and PUT URLs, so a local directory works exactly
as S3 does: the runner signs `(method, object, expiry)` with a key that never leaves its memory, and
the helper's curl moves the bytes. Bodies stream to and from disk in chunks (never whole in memory),
a PUT lands under a temporary name and is renamed into place only once complete, and an object
larger than `max_bytes` is refused with 413.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from aiohttp import BodyPartReader, web

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
URL_LIFETIME = 6 * 3600


class ObjectServer:
    def __init__(self, root: str, *, host: str = "127.0.0.1", max_bytes: int = 10 << 30) -> None:
        self.root = Path(root).expanduser()
        self.host = host
        self.max_bytes = max_bytes
        self._key = secrets.token_bytes(32)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._tokens: dict[int, str] = {}

    async def start(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        app = web.Application(client_max_size=self.max_bytes)
        app.router.add_get("/o/{name:.+}", self._get)
        app.router.add_put("/o/{name:.+}", self._put)
        app.router.add_post("/api/v4/jobs/{id:[0-9]+}/artifacts", self._upload_artifacts)
        app.router.add_get("/api/v4/jobs/{id:[0-9]+}/artifacts", self._download_artifacts)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://{self.host}:{port}"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def job_token(self, job_id: int) -> str:
        """The token job `job_id` sends to upload its artifacts, and its dependents to download them."""
        return self._tokens.setdefault(job_id, secrets.token_urlsafe(24))

    def has_archive(self, job_id: int) -> bool:
        """Whether job `job_id` uploaded an archive (its dependents then download it)."""
        return (self.root / "jobs" / str(job_id) / "archive").is_file()

    def dotenv(self, job_id: int, *, limit: int = 1 << 20) -> list[tuple[str, str]]:
        """The variables of job `job_id`'s dotenv report (KEY=VALUE lines), as its dependents get them."""
        report = self.root / "jobs" / str(job_id) / "dotenv"
        try:
            with gzip.open(report, "rb") as file:
                text = file.read(limit).decode(errors="replace")
        except (OSError, EOFError):
            return []
        found = []
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key.isidentifier() and key.isascii():
                found.append((key, value))
        return found

    def forget_jobs(self) -> None:
        """Remove the artifacts of every job this server issued a token for: they served one run."""
        for job_id in self._tokens:
            shutil.rmtree(self.root / "jobs" / str(job_id), ignore_errors=True)

    def _artifacts_dir(self, request: web.Request) -> Path:
        job_id = int(request.match_info["id"])
        token = self._tokens.get(job_id)
        if token is None or not hmac.compare_digest(token, request.headers.get("JOB-TOKEN", "")):
            raise web.HTTPForbidden()
        return self.root / "jobs" / str(job_id)

    async def _upload_artifacts(self, request: web.Request) -> web.Response:
        directory = self._artifacts_dir(request)
        fields: dict[str, str] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise web.HTTPBadRequest()
            if part.name != "file":
                fields[str(part.name)] = (await part.read_chunk(1024)).decode(errors="replace")
                continue
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, temporary = tempfile.mkstemp(dir=directory, prefix=".upload-")
            size = 0
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := await part.read_chunk(CHUNK):
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise web.HTTPRequestEntityTooLarge(max_size=self.max_bytes, actual_size=size)
                        out.write(chunk)
            except BaseException:
                _discard(temporary)
                raise
            fields["_file"] = temporary
        if "_file" not in fields:
            raise web.HTTPBadRequest()
        kind = (
            "".join(c for c in fields.get("artifact_type", "archive") if c.isalnum() or c == "_") or "archive"
        )
        os.replace(fields["_file"], directory / kind)
        return web.json_response({"id": int(request.match_info["id"])}, status=201)

    async def _download_artifacts(self, request: web.Request) -> web.StreamResponse:
        archive = self._artifacts_dir(request) / "archive"
        if not archive.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(archive, chunk_size=CHUNK)

    def urls(self, name: str) -> tuple[str, str]:
        """Presigned (GET, PUT) URLs of object `name` (a relative path without `..`)."""
        expires = int(time.time()) + URL_LIFETIME
        return self._url("GET", name, expires), self._url("PUT", name, expires)

    def _url(self, method: str, name: str, expires: int) -> str:
        signature = self._sign(method, name, expires)
        return f"{self.base_url}/o/{quote(name)}?expires={expires}&signature={signature}"

    def _sign(self, method: str, name: str, expires: int) -> str:
        return hmac.new(self._key, f"{method}\n{name}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def _path(self, request: web.Request) -> Path:
        name = request.match_info["name"]
        try:
            expires = int(request.query.get("expires", ""))
        except ValueError:
            raise web.HTTPForbidden() from None
        expected = self._sign(request.method, name, expires)
        if not hmac.compare_digest(expected, request.query.get("signature", "")) or expires < time.time():
            raise web.HTTPForbidden()
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise web.HTTPBadRequest()
        return self.root.joinpath(*parts)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        path = self._path(request)
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, chunk_size=CHUNK)

    async def _put(self, request: web.Request) -> web.Response:
        path = self._path(request)
        if (request.content_length or 0) > self.max_bytes:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.max_bytes, actual_size=request.content_length or 0
            )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := await request.content.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise web.HTTPRequestEntityTooLarge(max_size=self.max_bytes, actual_size=size)
                    out.write(chunk)
            os.replace(temporary, path)
        except BaseException:
            _discard(temporary)
            raise
        return web.Response(status=200)


def _discard(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
