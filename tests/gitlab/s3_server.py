"""A real S3-compatible server for the cache tests: SeaweedFS (`weed server -s3`), not ours.

Found as `weed` on PATH, in $KUBERUNNER_TEST_WEED, or in ~/go/bin; build it with
`scripts/build-seaweedfs` (the module has replace directives, so `go install` refuses it).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from real.cluster import TEST_HOST_ADDRESS

from kuberunner.config import CacheS3
from kuberunner.runner.cache_urls import signed_url

ACCESS_KEY = "kuberunner-test"
SECRET_KEY = "kuberunner-test-secret-key"
BUCKET = "runner-cache"


BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-seaweedfs"


@dataclass(frozen=True)
class S3Server:
    address: str
    """host:port of the S3 API."""
    data_dir: Path


def weed_binary() -> str:
    for candidate in (
        os.environ.get("KUBERUNNER_TEST_WEED"),
        shutil.which("weed"),
        str(Path.home() / "go" / "bin" / "weed"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    # A fresh machine has Go and the module proxy but no binary: build it once (a few minutes cold;
    # the Go caches keep later runs fast), as the README's test command must work on its own.
    built = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800)
    weed = Path.home() / "go" / "bin" / "weed"
    if built.returncode != 0 or not weed.is_file():
        raise RuntimeError(f"building SeaweedFS with {BUILD_SCRIPT} failed:\n{built.stdout}{built.stderr}")
    return str(weed)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((TEST_HOST_ADDRESS, 0))
        return int(sock.getsockname()[1])


@contextmanager
def seaweedfs(root: Path) -> Iterator[S3Server]:
    identities = {
        "identities": [
            {
                "name": "kuberunner",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = root / "s3.json"
    config.write_text(json.dumps(identities))
    data = root / "data"
    data.mkdir()
    ports = {name: _free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: _free_port() for name in ("master", "volume", "filer", "s3")}
    log = (root / "weed.log").open("wb")
    process = subprocess.Popen(
        [
            weed_binary(),
            "server",
            f"-dir={data}",
            f"-ip={TEST_HOST_ADDRESS}",
            f"-ip.bind={TEST_HOST_ADDRESS}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={grpc['s3']}",
            "-master.telemetry=false",
            f"-s3.config={config}",
            "-volume.max=4",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    address = f"{TEST_HOST_ADDRESS}:{ports['s3']}"
    try:
        _wait_for_bucket(address, process, root / "weed.log")
        yield S3Server(address, data)
    finally:
        # The data is the test's own and thrown away with tmp_path; weed's graceful stop can take
        # 20 s waiting on its own master, so nothing is gained by asking.
        process.kill()
        process.wait()
        log.close()


def _wait_for_bucket(address: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Create the bucket with a presigned PUT (our signer against theirs), once the server answers."""

    s3 = CacheS3(
        server_address=address,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        bucket_name=BUCKET,
        insecure=True,
    )
    moment = datetime.datetime.now(datetime.UTC)
    bucket_url = signed_url(s3, "PUT", f"/{BUCKET}", moment=moment, expires=600)
    deadline = time.monotonic() + 60
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("weed exited: " + log.read_text(errors="replace")[-2000:])
        done = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", bucket_url],
            capture_output=True,
            text=True,
            timeout=10,
        )
        last = done.stdout
        if last in ("200", "409"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"SeaweedFS did not create the bucket (last answer {last!r})")
