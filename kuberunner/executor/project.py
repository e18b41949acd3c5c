"""The job's project directory as a gzip'd tar, delivered into the pod inside the scripts Secret.

The same way on every cluster: no host path, no exec. In a git work tree the archive holds what a
clone would plus local changes (tracked and untracked-but-not-ignored files); elsewhere every file.
Real clusters cap a Secret at 1 MiB, so a larger archive is refused with a clear message.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

SECRET_LIMIT = 1024 * 1024 - 64 * 1024
"""A Secret holds at most 1 MiB; leave room for the stage scripts beside the archive."""


class ProjectTooLarge(Exception):
    pass


def _git_files(root: Path) -> list[Path] | None:
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    names = [n for n in listed.stdout.decode(errors="surrogateescape").split("\0") if n]
    return [root / n for n in names]


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


def archive_directory(root: Path, *, limit: int = SECRET_LIMIT) -> bytes:
    files = _git_files(root)
    if files is None:
        files = _all_files(root)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for path in files:
            if path.is_file() or path.is_symlink():
                tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
            if buffer.tell() > limit:
                break
    data = buffer.getvalue()
    if len(data) > limit:
        raise ProjectTooLarge(
            f"{root}: the project directory is more than {limit // 1024} KiB compressed, "
            "too large to deliver in a Kubernetes Secret"
        )
    return data
