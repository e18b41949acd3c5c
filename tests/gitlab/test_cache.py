"""The cache on `kuberunner run` (issue 13), in a real S3-compatible server (SeaweedFS), through
presigned URLs the helper uses: saved by one job, restored by the next; `pull` never saves."""

from __future__ import annotations

import datetime
import io
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cli.execution import Cluster, section_end, section_start, unstamped
from real.cluster import TEST_HOST_ADDRESS

from kuberunner.config import CacheS3
from kuberunner.executor.object_server import ObjectServer
from kuberunner.runner.cache_urls import presign

from .fake_gitlab import FakeGitLab
from .runner_process import finished, script_job, started_runner
from .s3_server import ACCESS_KEY, BUCKET, SECRET_KEY, S3Server, seaweedfs


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory.mktemp("s3")) as server:
        yield server


def cache_config(server: S3Server) -> str:
    return (
        '  [runners.cache]\n    Type = "s3"\n    Path = "ci"\n    Shared = true\n'
        f'    [runners.cache.s3]\n      ServerAddress = "{server.address}"\n'
        f'      AccessKey = "{ACCESS_KEY}"\n      SecretKey = "{SECRET_KEY}"\n'
        f'      BucketName = "{BUCKET}"\n      Insecure = true\n'
    )


LOCK = {"key": "LOCK", "value": "v1", "public": True, "masked": False}


def cache(key: str, policy: str = "pull-push", **extra: Any) -> list[dict[str, Any]]:
    return [
        {"key": key, "paths": [".deps/"], "policy": policy, "when": "on_success", "untracked": False, **extra}
    ]


def stored(server: S3Server, key: str) -> dict[str, bytes]:
    """The cache archive of `key` as the S3 server keeps it (project 7: the fake GitLab's)."""
    s3 = CacheS3(server.address, ACCESS_KEY, SECRET_KEY, BUCKET, insecure=True)
    url = presign(s3, "GET", f"ci/project/7/{key}/cache.zip", now=datetime.datetime.now(datetime.UTC))
    with urllib.request.urlopen(url, timeout=10) as reply:
        archive = zipfile.ZipFile(io.BytesIO(reply.read()))
    return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}


async def test_cache_is_saved_restored_and_pull_does_not_save(
    s3: S3Server, gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    save = gitlab.enqueue(
        script_job(
            "mkdir -p .deps && head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \\n' > .deps/lib.txt",
            cache=cache("deps-${LOCK}"),
            variables=[LOCK],
        )
    )
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path, extra=cache_config(s3))
    try:
        await finished(save, runner, within=120)
        assert save.state == "success", save.text.decode(errors="replace")[-2000:]
        saved = stored(s3, "deps-v1")
        assert list(saved) == [".deps/lib.txt"] and len(saved[".deps/lib.txt"]) == 128
        pull = gitlab.enqueue(
            script_job(
                "cat .deps/lib.txt; echo", "echo changed > .deps/lib.txt", cache=cache("deps-v1", "pull")
            )
        )
        await finished(pull, runner, within=120)
        fallback = gitlab.enqueue(
            script_job("cat .deps/lib.txt; echo", cache=cache("other", "pull", fallback_keys=["deps-v1"]))
        )
        await finished(fallback, runner, within=120)
        missing = gitlab.enqueue(script_job("ls -a", cache=cache("never-saved", "pull")))
        await finished(missing, runner, within=120)
    finally:
        assert await runner.stop() == 0
    assert pull.state == "success", pull.text.decode(errors="replace")[-2000:]
    text = unstamped(pull.text)
    assert b"\n" + saved[".deps/lib.txt"] + b"\n" in text
    assert (
        section_start("restore_cache", "Restoring cache")
        + b"Checking cache for deps-v1...\nSuccessfully extracted cache\n"
        + section_end("restore_cache")
    ) in text
    assert b"archive_cache" not in text
    assert stored(s3, "deps-v1") == saved  # `pull` left the object as it was
    assert section_start("archive_cache", "Saving cache for successful job") in unstamped(save.text)
    assert b"Created cache\n" in save.text
    assert fallback.state == "success" and b"\n" + saved[".deps/lib.txt"] + b"\n" in fallback.text
    assert missing.state == "success", missing.text.decode(errors="replace")[-2000:]
    assert b"WARNING: file does not exist for cache never-saved\nFailed to extract cache\n" in unstamped(
        missing.text
    )


async def test_local_cache_is_a_directory_the_runner_serves(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    directory = tmp_path / "cache"
    config = (
        '  [runners.cache]\n    Type = "local"\n    Shared = true\n'
        f'    [runners.cache.local]\n      Directory = "{directory}"\n'
        f'      ListenAddress = "{TEST_HOST_ADDRESS}"\n'  # where the job's pods reach this machine
    )
    save = gitlab.enqueue(script_job("mkdir -p .deps && echo local-bytes > .deps/lib.txt", cache=cache("k1")))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path, extra=config)
    try:
        await finished(save, runner, within=120)
        restore = gitlab.enqueue(script_job("cat .deps/lib.txt", cache=cache("k1", "pull")))
        await finished(restore, runner, within=120)
    finally:
        assert await runner.stop() == 0
    assert save.state == "success", save.text.decode(errors="replace")[-2000:]
    archive = directory / "project" / "7" / "k1" / "cache.zip"
    assert zipfile.ZipFile(archive).read(".deps/lib.txt") == b"local-bytes\n"
    assert restore.state == "success" and b"\nlocal-bytes\n" in restore.text, restore.text[-2000:]


async def test_object_server_wants_a_valid_signature_and_streams_to_disk(tmp_path: Path) -> None:
    server = ObjectServer(str(tmp_path / "objects"), max_bytes=1 << 20)
    await server.start()
    try:
        get, put = server.urls("p/key/cache.zip")
        async with aiohttp.ClientSession() as session:
            async with session.get(get) as reply:
                assert reply.status == 404
            async with session.put(get, data=b"x") as reply:
                assert reply.status == 403  # a GET URL does not allow a PUT
            async with session.put(put.replace("signature=", "signature=0"), data=b"x") as reply:
                assert reply.status == 403
            async with session.put(put, data=b"a" * 1000) as reply:
                assert reply.status == 200
            async with session.put(put, data=io.BytesIO(b"b" * ((1 << 20) + 1))) as reply:
                assert reply.status == 413
            async with session.get(get) as reply:
                assert (reply.status, await reply.read()) == (200, b"a" * 1000)
    finally:
        await server.close()
    assert [p.name for p in (tmp_path / "objects" / "p" / "key").iterdir()] == ["cache.zip"]
