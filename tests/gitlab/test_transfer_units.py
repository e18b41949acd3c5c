"""The sans-I/O parts of issue 13: GitLab's globs as awk regexes, expansion, cache keys, SigV4."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from pathlib import Path

import pytest

from kuberunner.config import CacheS3
from kuberunner.errors import JobFileError
from kuberunner.gitlab.payload import PayloadError, parse_job
from kuberunner.job.transfer_keywords import (
    Artifacts,
    Cache,
    Service,
    read_artifacts,
    read_caches,
    read_services,
)
from kuberunner.job.variables_expand import expand, expand_values
from kuberunner.job.yaml_nodes import Map, load_documents
from kuberunner.runner.cache_urls import presign, signed_url
from kuberunner.shell.globs import glob_regex, project_relative
from kuberunner.shell.transfers import Transfers, Upload, render_uploads, sanitized_key

FILES = [
    "a.txt",
    "build/out.bin",
    "build/sub/deep.bin",
    "build/sub/x.log",
    "buildx/out.bin",
    "docs/a[1].md",
    "src/main.c",
]


def awk_matches(pattern: str) -> list[str]:
    """What the pod's awk keeps for `pattern` (busybox awk, as a minimal image has)."""
    program = '$0 ~ ENVIRON["RE"]'
    done = subprocess.run(
        ["busybox", "awk", program],
        input="\n".join(FILES) + "\n",
        capture_output=True,
        text=True,
        env={"RE": glob_regex(pattern)},
        check=True,
    )
    return done.stdout.split()


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("build", ["build/out.bin", "build/sub/deep.bin", "build/sub/x.log"]),
        ("build/*.bin", ["build/out.bin"]),
        ("build/**/*.bin", ["build/out.bin", "build/sub/deep.bin"]),
        ("**/*.bin", ["build/out.bin", "build/sub/deep.bin", "buildx/out.bin"]),
        ("build*/out.bin", ["build/out.bin", "buildx/out.bin"]),
        ("?.txt", ["a.txt"]),
        ("docs/a[[]1].md", ["docs/a[1].md"]),
        ("src/[a-m]*.c", ["src/main.c"]),
        (".", FILES),
    ],
)
def test_globs_match_as_gitlab_defines_them(pattern: str, expected: list[str]) -> None:
    assert awk_matches(pattern) == expected


def test_paths_outside_the_project_are_refused() -> None:
    root = "/builds/g/p"
    assert project_relative("../x", root) is None
    assert project_relative("/etc/passwd", root) is None
    assert project_relative("a/../../p2/x", root) is None
    assert project_relative("/builds/g/p/out/", root) == "out"
    assert project_relative("./build/**/*.bin", root) == "build/**/*.bin"
    assert project_relative("a/../b", root) == "b"


def test_expansion_follows_gitlab_runner() -> None:
    values = {"A": "1", "B": "two"}
    assert expand("$A-${B}-$C-$$A-$-${", values) == "1-two--$A-$-${"
    assert expand_values([("X", "$Y"), ("Y", "y"), ("Z", "$Y")], raw=frozenset({"Z"})) == (
        ("X", "y"),
        ("Y", "y"),
        ("Z", "$Y"),
    )


def test_cache_keys_are_sanitised() -> None:
    assert sanitized_key(" main/deps/ ") == "main/deps"
    assert sanitized_key("a\\b") == "a/b"
    assert sanitized_key("../escape") is None
    assert sanitized_key("x" * 256) is None
    assert sanitized_key("") is None


def test_presigned_url_matches_the_aws_documentation_example() -> None:
    # The example of AWS's "Authenticating Requests: Using Query Parameters (SigV4)" page.
    s3 = CacheS3(
        server_address="examplebucket.s3.amazonaws.com",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        bucket_name="examplebucket",
        bucket_location="us-east-1",
    )
    moment = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC)
    url = signed_url(s3, "GET", "/test.txt", moment=moment, expires=86400)
    assert url == (
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    path_style = presign(s3, "PUT", "runner/ab/project/7/my key/cache.zip", now=moment, expires=60)
    assert path_style.startswith(
        "https://examplebucket.s3.amazonaws.com/examplebucket/runner/ab/project/7/my%20key/"
    )


def test_payload_artifacts_with_a_bad_shape_name_the_field() -> None:
    base = {"id": 1, "token": "t"}
    with pytest.raises(PayloadError, match=r"'artifacts\[0\].paths' must be a list of strings"):
        parse_job({**base, "artifacts": [{"paths": [1]}]})
    with pytest.raises(PayloadError, match=r"'dependencies\[0\].id' must be an integer"):
        parse_job({**base, "dependencies": [{"name": "x"}]})
    with pytest.raises(PayloadError, match=r"'cache\[0\].when' must be on_success"):
        parse_job({**base, "cache": [{"key": "k", "when": "never"}]})


def test_a_helper_image_without_zip_is_named_at_once(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("sh", "mktemp", "rm", "curl", "find", "awk", "sed"):
        (tools / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    transfers = Transfers(api_url="http://gitlab", job_id=1, job_token="t", uploads=(Upload("a", ("b",)),))
    script = render_uploads(transfers, transfers.uploads, project_dir=str(tmp_path))
    done = subprocess.run(
        [str(tools / "sh"), "-c", script],
        capture_output=True,
        text=True,
        env={"PATH": str(tools)},
        timeout=10,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "ERROR: zip is not installed in the helper image\n",
        "",
    )


JOB_FILE = """\
build:
  script: [make]
  artifacts:
    name: bin-$CI_JOB_NAME
    paths: [build/, "*.bin"]
    exclude: ["build/**/*.o"]
    when: always
    expire_in: 1 week
    reports:
      junit: report.xml
      dotenv: [build.env]
    public: false
  cache:
    - key: {files: [Gemfile.lock], prefix: ruby}
      paths: [vendor/]
      policy: pull
      fallback_keys: [main]
    - key: plain
      paths: [.npm/]
  services:
    - redis:7
    - name: postgres:15
      alias: db
      entrypoint: ["docker-entrypoint.sh"]
      command: postgres
      variables: {POSTGRES_PASSWORD: secret}
      pull_policy: [if-not-present, always]
"""


def job_entries(text: str, tmp_path: Path) -> Map:
    root = load_documents(text, tmp_path / ".gitlab-ci.yml")[0]
    assert isinstance(root, Map)
    job = root.get("build")
    assert job is not None and isinstance(job.value, Map)
    return job.value


def test_exec_reads_artifacts_cache_and_services_as_gitlab_spells_them(tmp_path: Path) -> None:
    job = job_entries(JOB_FILE, tmp_path)
    warnings: list[str] = []
    path = tmp_path / ".gitlab-ci.yml"
    where = "job 'build'"
    artifacts = read_artifacts(job.get("artifacts"), where, path, warnings)  # type: ignore[arg-type]
    caches = read_caches(job.get("cache"), where, path, warnings)  # type: ignore[arg-type]
    services = read_services(job.get("services"), where, path, warnings)  # type: ignore[arg-type]
    assert artifacts == Artifacts(
        paths=("build/", "*.bin"),
        exclude=("build/**/*.o",),
        name="bin-$CI_JOB_NAME",
        when="always",
        expire_in="1 week",
        reports=(("junit", ("report.xml",)), ("dotenv", ("build.env",))),
    )
    assert caches == (
        Cache(
            key_files=("Gemfile.lock",),
            key_prefix="ruby",
            paths=("vendor/",),
            policy="pull",
            fallback_keys=("main",),
        ),
        Cache(key="plain", paths=(".npm/",)),
    )
    assert services == (
        Service(name="redis:7"),
        Service(
            name="postgres:15",
            alias="db",
            entrypoint=("docker-entrypoint.sh",),
            command=("postgres",),
            variables=(("POSTGRES_PASSWORD", "secret"),),
            pull_policy=("IfNotPresent", "Always"),
        ),
    )
    assert warnings == ["job 'build': keyword 'artifacts:public' is not supported yet and is ignored"]


def test_exec_names_the_line_of_a_bad_service_pull_policy(tmp_path: Path) -> None:
    job = job_entries(
        "build:\n  script: [make]\n  services:\n    - name: redis\n      pull_policy: sometimes\n", tmp_path
    )
    with pytest.raises(
        JobFileError,
        match=r"\.gitlab-ci\.yml:5: job 'build': 'services:pull_policy' must be always, if-not-present or",
    ):
        read_services(job.get("services"), "job 'build'", tmp_path / ".gitlab-ci.yml", [])  # type: ignore[arg-type]


def test_exec_names_the_line_of_a_wrong_shape(tmp_path: Path) -> None:
    job = job_entries("build:\n  script: [make]\n  cache:\n    policy: sometimes\n", tmp_path)
    with pytest.raises(
        JobFileError, match=r"\.gitlab-ci\.yml:4: job 'build': 'cache:policy' must be one of pull"
    ):
        read_caches(job.get("cache"), "job 'build'", tmp_path / ".gitlab-ci.yml", [])  # type: ignore[arg-type]
