"""`kuberunner exec` passes artifacts and the cache between the jobs of one file (issue 13), with the
helper stages a GitLab job runs, against the runner's own object server; on both log transports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from real.cluster import HELPER_IMAGE, REAL_KUBECONFIG, TEST_HOST_ADDRESS

from .execution import BIN, Cluster, Target, run_exec

BUILD_AND_TEST = {
    "stages": ["build", "test"],
    "build": {
        "stage": "build",
        "script": [
            "mkdir -p out .deps && head -c 2097152 /dev/urandom > out/app.bin && echo cached > .deps/x",
            "echo not-an-artifact > stray.txt && echo BUILD_VERSION=1.2.3 > build.env",
            "sha256sum out/app.bin",
        ],
        "artifacts": {"paths": ["out/"], "reports": {"dotenv": "build.env"}},
        "cache": {"key": "deps-$CI_JOB_NAME", "paths": [".deps/"]},
    },
    "test": {
        "stage": "test",
        "script": [
            "sha256sum out/app.bin",
            "test ! -e stray.txt && echo no stray",
            "cat .deps/x || true",
            'echo "version from build: $BUILD_VERSION"',
        ],
        "cache": {"key": "deps-build", "paths": [".deps/"], "policy": "pull"},
    },
}


def test_a_build_then_test_pipeline_passes_artifacts_and_cache(target: Target, tmp_path: Path) -> None:
    work = tmp_path / "project"
    work.mkdir()
    home = tmp_path / "home"
    # The runner's object server listens where the pods reach this machine; the transfers run in the
    # build container (no git sources, no helper), so its image needs curl and zip.
    config = tmp_path / "config.toml"
    config.write_text(
        f'[[runners]]\nname = "artifacts"\n[runners.cache.local]\nListenAddress = "{TEST_HOST_ADDRESS}"\n'
    )
    done = run_exec(
        target.cluster,
        work,
        json.dumps(BUILD_AND_TEST),
        *target.args,
        "-c",
        str(config),
        "--concurrency",
        "1",
        env={"HOME": str(home), "KUBERNETES_IMAGE": HELPER_IMAGE} if REAL_KUBECONFIG else {"HOME": str(home)},
    )
    trace = done.stdout
    assert done.status == 0, trace.decode(errors="replace")[-3000:] + done.stderr
    sums = [line.split(b"] ", 1)[-1] for line in trace.split(b"\n") if line.endswith(b"  out/app.bin")]
    assert len(sums) == 2 and sums[0] == sums[1], trace.decode(errors="replace")[-3000:]
    assert b"no stray\n" in trace
    assert b"Downloading artifacts from coordinator... ok" in trace
    # The cache key's variable ($CI_JOB_NAME) expanded to the name of the job that saved it.
    assert b"Checking cache for deps-build...\nSuccessfully extracted cache\n" in trace
    assert b"$ cat .deps/x || true\ncached\n" in trace
    assert b"\nversion from build: 1.2.3\n" in trace  # the build's dotenv report became variables
    # The cache stays for the next run; the run's artifacts went with it.
    cache_dir = home / ".cache" / "kuberunner" / "cache"
    assert (cache_dir / "cache" / "deps-build" / "cache.zip").is_file()
    assert not any((cache_dir / "jobs").iterdir())


def test_exec_sets_the_predefined_variables_a_local_run_knows(cluster: Cluster, tmp_path: Path) -> None:
    work = tmp_path / "shop"
    work.mkdir()
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run([*git, "init", "-q", "-b", "feature"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "first"], check=True)
    sha = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    pipeline = {
        "stages": ["lint"],
        "check": {
            "stage": "lint",
            "script": [
                'echo "$GITLAB_CI $CI_JOB_STAGE $CI_COMMIT_REF_NAME $CI_COMMIT_BRANCH $CI_COMMIT_SHA"',
                'echo "$CI_COMMIT_SHORT_SHA $CI_PROJECT_NAME $CI_PROJECT_PATH $CI_JOB_STATUS"',
                'test "$CI_PIPELINE_ID" -gt 0 && echo pipeline id set',
            ],
        },
    }
    done = run_exec(cluster, work, json.dumps(pipeline))
    assert done.status == 0, done.stdout.decode(errors="replace")[-2000:] + done.stderr
    assert f"\ntrue lint feature feature {sha}\n".encode() in done.stdout
    assert f"\n{sha[:8]} shop shop running\n".encode() in done.stdout
    assert b"\npipeline id set\n" in done.stdout


DEPENDENCIES = """
spec:
  inputs:
    out:
      default: out
---
stages: [build, test]
default:
  artifacts:
    paths: ["$[[ inputs.out ]]/"]
    untracked: true
a:
  stage: build
  script: mkdir -p $[[ inputs.out ]] && echo a > $[[ inputs.out ]]/a.txt
b:
  stage: build
  script: mkdir -p $[[ inputs.out ]] && echo b > $[[ inputs.out ]]/b.txt
.look:
  stage: test
  inherit:
    default: false
  script: echo "sees:$(ls $[[ inputs.out ]] 2>/dev/null | tr '\\n' ' ')"
only-a:
  extends: .look
  dependencies: [a]
none:
  extends: .look
  dependencies: []
every:
  extends: .look
"""


def test_default_artifacts_reach_the_jobs_that_dependencies_name(target: Target, tmp_path: Path) -> None:
    """`default: artifacts` is every build job's; `dependencies` picks whose a test job gets; the main
    file's `spec:inputs` takes `--input` (issues 13 and 14)."""
    work = tmp_path / "project"
    work.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[[runners]]\nname = "deps"\n[runners.cache.local]\nListenAddress = "{TEST_HOST_ADDRESS}"\n'
    )
    home = {"HOME": str(tmp_path / "home")}
    done = run_exec(
        target.cluster,
        work,
        DEPENDENCIES,
        *target.args,
        "-c",
        str(config),
        "--input",
        "out=dist",
        env={**home, "KUBERNETES_IMAGE": HELPER_IMAGE} if REAL_KUBECONFIG else home,
    )
    trace = done.stdout.decode(errors="replace")
    assert done.status == 0, trace[-3000:] + done.stderr
    seen = dict(re.findall(r"\n(\S+) +\| sees:(.*)\n", trace))
    assert seen == {"only-a": "a.txt ", "none": "", "every": "a.txt b.txt "}, trace[-3000:]
    # `untracked` cannot work on an archive without .git: said, not silently dropped.
    warning = (
        "WARNING: artifacts:untracked collects nothing under exec (the pod's project is not a git clone)"
    )
    assert sorted(re.findall(rf"\n(\S+) +\| {re.escape(warning)}\n", trace)) == ["a", "b"]


def test_a_missing_input_of_the_main_file_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text(DEPENDENCIES.replace("      default: out\n", ""))
    done = subprocess.run(
        [str(BIN), "exec", "-f", str(tmp_path / ".gitlab-ci.yml"), "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(tmp_path / "none")},
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"kuberunner: error: {tmp_path}/.gitlab-ci.yml:4: `out` input: required value has not been provided\n"
    )
    listed = subprocess.run(
        [
            str(BIN),
            "exec",
            "-f",
            str(tmp_path / ".gitlab-ci.yml"),
            "--list",
            "--input",
            "out=x",
            "--input",
            "y=1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(tmp_path / "none")},
    )
    assert (listed.returncode, listed.stderr) == (
        2,
        f"kuberunner: error: {tmp_path}/.gitlab-ci.yml: unknown input arguments: y\n",
    )
