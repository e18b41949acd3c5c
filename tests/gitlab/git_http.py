"""A real git repository served over smart HTTP by `git http-backend` (CGI), as GitLab's Workhorse would.

Clones authenticate as `gitlab-ci-token:<job token>`; the fake asks `authorized(token)` whether that
job may still read. git sends URL credentials only after a 401 challenge, as with GitLab.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

BACKEND = "/usr/lib/git-core/git-http-backend"


def make_repository(root: Path) -> tuple[Path, list[str]]:
    """group/project.git (bare) with three commits on main; returns it and the shas, oldest first."""
    work = root / "work"
    work.mkdir(parents=True)
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "HOME": str(root),
        "PATH": "/usr/bin:/bin",
    }

    def git(*args: str, cwd: Path = work) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    shas = []
    for number in (1, 2, 3):
        (work / "version.txt").write_text(f"version {number}\n")
        git("add", "version.txt")
        git("commit", "-q", "-m", f"commit {number}")
        shas.append(git("rev-parse", "HEAD"))
    bare = root / "repos" / "group" / "project.git"
    bare.parent.mkdir(parents=True)
    git("clone", "-q", "--bare", str(work), str(bare), cwd=root)
    return root / "repos", shas


def git_handler(
    repos: Path, authorized: Callable[[str], bool]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        user_token = _basic_auth(request.headers.get("Authorization", ""))
        if user_token is None or user_token[0] != "gitlab-ci-token" or not authorized(user_token[1]):
            return web.Response(
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="GitLab"'},
                text="HTTP Basic: Access denied\n",
            )
        body = await request.read()
        env = {
            "GIT_PROJECT_ROOT": str(repos),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH": "/usr/bin:/bin",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "gitlab-ci-token",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
        }
        process = await asyncio.create_subprocess_exec(
            BACKEND, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, _ = await process.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        return web.Response(status=status, body=payload, headers=headers)

    return handle


def _basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return None
    return user, password
