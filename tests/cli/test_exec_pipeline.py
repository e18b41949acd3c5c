"""`kuberunner exec` runs a whole pipeline as GitLab would (issue 14): stages and needs, jobs at once,
manual jobs only when asked, malformed files refused with GitLab's words; most of it is unit-tested in
tests/pipeline, these few runs show it end to end."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from real.cluster import REAL_KUBECONFIG

from .execution import BIN, Cluster, run_exec


def stamped(name: str, seconds: int) -> str:
    """A job that prints when it starts and ends, by the uptime of the pods' kernel (the host's): with
    hundredths of a second, in any image (busybox's `date` has no %N)."""
    clock = "$(cut -d' ' -f1 /proc/uptime)"
    return (
        f'{name}:\n  script:\n    - echo "{name} start {clock}"\n    - sleep {seconds}\n'
        f'    - echo "{name} end {clock}"\n'
    )


BUILD_SECONDS, LINT_SECONDS = (5, 20) if REAL_KUBECONFIG else (1, 3)
"""A real kubelet takes seconds to start a pod (the embedded cluster a fraction of one), and the two
pods of one stage start up to seconds apart: long enough for build and lint to overlap, and for
test to start (after build's pod is gone and test's pod runs) while lint still runs."""


def times(output: bytes) -> dict[str, tuple[float, float]]:
    found: dict[str, dict[str, float]] = {}
    for name, event, stamp in re.findall(rb"\| (\S+) (start|end) ([0-9.]+)\n", output):
        found.setdefault(name.decode(), {})[event.decode()] = float(stamp)
    return {name: (events["start"], events["end"]) for name, events in found.items()}


def test_stages_run_in_order_independent_jobs_overlap_and_needs_take_a_shortcut(
    cluster: Cluster, tmp_path: Path
) -> None:
    pipeline = (
        "stages: [build, test, deploy]\n"
        + stamped("build", BUILD_SECONDS).replace("build:\n", "build:\n  stage: build\n", 1)
        + stamped("lint", LINT_SECONDS).replace("lint:\n", "lint:\n  stage: build\n", 1)
        + stamped("test", 1).replace("test:\n", "test:\n  stage: test\n  needs: [build]\n", 1)
        + stamped("deploy", 0).replace("deploy:\n", "deploy:\n  stage: deploy\n", 1)
    )
    done = run_exec(cluster, tmp_path, pipeline, "--concurrency", "4")
    assert done.status == 0, done.stderr
    seen = times(done.trace)
    assert sorted(seen) == ["build", "deploy", "lint", "test"], done.trace.decode(errors="replace")
    build, lint, test, deploy = seen["build"], seen["lint"], seen["test"], seen["deploy"]
    # build and lint (one stage) ran at the same time; test (needs build) started before lint ended.
    assert max(build[0], lint[0]) < min(build[1], lint[1])
    assert build[1] <= test[0] < lint[1]
    assert deploy[0] >= max(lint[1], test[1])
    # Piped: no escape codes, no section markers; each line names its job; a summary ends the output.
    assert b"\x1b" not in done.stdout and b"section_" not in done.stdout
    assert re.search(rb"^lint   \| lint start ", done.stdout, re.MULTILINE)
    assert done.stdout.endswith(b"Pipeline passed\n")
    assert re.search(rb"\ntest    test    passed  +[0-9.]+s\n", done.stdout)


MANUAL = "build:\n  script: echo built\ndeploy:\n  stage: deploy\n  when: manual\n  script: echo DEPLOYED\n"


def test_a_manual_deploy_runs_only_when_asked(cluster: Cluster, tmp_path: Path) -> None:
    done = run_exec(cluster, tmp_path, MANUAL)
    assert done.status == 0, done.stderr
    assert b"DEPLOYED" not in done.stdout and b"built\n" in done.stdout
    assert re.search(rb"\ndeploy  deploy  manual +-\n", done.stdout)
    asked = run_exec(cluster, tmp_path, MANUAL, "deploy")
    assert asked.status == 0, asked.stderr
    assert b"\nDEPLOYED\n" in asked.stdout and b"built" not in asked.stdout


def test_a_failure_goes_on_as_gitlab_does_and_the_exit_status_says_so(
    cluster: Cluster, tmp_path: Path
) -> None:
    pipeline = (
        "build:\n  stage: build\n  script: exit 3\n"
        "deploy:\n  stage: deploy\n  script: echo DEPLOYED\n"
        "notify:\n  stage: deploy\n  when: on_failure\n  script: echo NOTIFIED\n"
    )
    done = run_exec(cluster, tmp_path, pipeline)
    assert done.status == 1, done.stderr
    assert b"DEPLOYED" not in done.stdout and b"notify | NOTIFIED\n" in done.stdout
    assert re.search(rb"\nbuild   build   failed  +[0-9.]+s\ndeploy  deploy  skipped +-\n", done.stdout)
    assert done.stdout.endswith(b"Pipeline failed (1 job failed)\n")


def exec_file(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / ".gitlab-ci.yml").write_text(text)
    return subprocess.run(
        [str(BIN), "exec", "-f", str(tmp_path / ".gitlab-ci.yml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(tmp_path / "none")},
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("build:\n  script: b\n  foo: 1\n", ":3: jobs:build config contains unknown keys: foo"),
        (
            "test:\n  stage: tests\n  script: t\n",
            ":2: test job: chosen stage does not exist; "
            "available stages are .pre, build, test, deploy, .post",
        ),
        ("deploy:\n  script: d\n  needs:\n    - x\n", ":4: deploy job: undefined need: x"),
        ("include:\n  - template: Auto-DevOps.gitlab-ci.yml\n", ":2: include:template needs a GitLab server"),
    ],
)
def test_a_malformed_pipeline_is_refused_before_any_job_runs(tmp_path: Path, text: str, message: str) -> None:
    done = exec_file(tmp_path, text)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"kuberunner: error: {tmp_path}/.gitlab-ci.yml{message}")
    assert len(done.stderr.splitlines()) == 1


def test_list_prints_the_pipeline_and_runs_nothing(tmp_path: Path) -> None:
    text = (
        "build: {stage: build, script: b, parallel: 2}\n"
        "deploy: {stage: deploy, needs: [build], when: manual, script: d}\n"
    )
    done = exec_file(tmp_path, text, "--list")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "STAGE   JOB        WHEN                      NEEDS\n"
        "build   build 1/2  on_success                (stage)\n"
        "build   build 2/2  on_success                (stage)\n"
        "deploy  deploy     manual (allowed to fail)  build 1/2, build 2/2\n"
    )
