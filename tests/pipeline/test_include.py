"""include: local (files, wildcards, rules, inputs), remote, nested, merge order; server-only ones refused."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from kuberunner.errors import JobFileError
from kuberunner.pipeline.plan import include

from .helpers import make_plan, summary


def test_a_local_include_is_merged_under_the_including_file(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path,
        """
        include: ci/base.yml
        build:
          variables: {FROM: main}
        """,
        files={
            "ci/base.yml": """
            stages: [build, ship]
            build:
              stage: build
              script: make
              variables: {FROM: base, KEPT: "1"}
            ship: {stage: ship, script: ship}
            """
        },
    )
    assert summary(plan) == [("build", "build", "on_success", None), ("ship", "ship", "on_success", None)]
    variables = dict(plan.jobs[0].spec.variables)
    assert (variables["FROM"], variables["KEPT"]) == ("main", "1")


def test_wildcards_nested_includes_and_references_across_files(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path,
        """
        include:
          - local: /ci/jobs/*.yml
        """,
        files={
            "ci/jobs/a.yml": "include: ci/common.yml\na:\n  script: !reference [.common, script]\n",
            "ci/jobs/b.yml": "b: {script: b}\n",
            "ci/common.yml": ".common:\n  script: [echo common]\n",
        },
    )
    assert [j.name for j in plan.jobs] == ["a", "b"]
    assert plan.jobs[0].spec.script == ("echo common",)


def test_include_rules_decide_whether_a_file_is_included(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path,
        """
        include:
          - local: a.yml
            rules:
              - if: $CI_COMMIT_BRANCH == "dev"
          - local: b.yml
            rules:
              - exists: [b.yml]
        """,
        files={"a.yml": "a: {script: a}\n", "b.yml": "b: {script: b}\n"},
    )
    assert [j.name for j in plan.jobs] == ["b"]


def test_inputs_are_interpolated_with_defaults(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path,
        """
        include:
          - local: tpl.yml
            inputs: {name: lint, jobs: 2}
        """,
        files={
            "tpl.yml": """
            spec:
              inputs:
                name:
                stage:
                  default: test
                jobs:
                  type: number
                  default: 1
            ---
            "$[[ inputs.name ]]-job":
              stage: $[[ inputs.stage ]]
              parallel: $[[ inputs.jobs ]]
              script: echo $[[ inputs.name ]] in $[[ inputs.stage ]]
            """
        },
    )
    assert [j.name for j in plan.jobs] == ["lint-job 1/2", "lint-job 2/2"]
    assert plan.jobs[0].spec.script == ("echo lint in test",)


def test_a_missing_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="`name` input: required value has not been provided"):
        make_plan(
            tmp_path,
            "include: tpl.yml\n",
            files={"tpl.yml": "spec:\n  inputs:\n    name:\n---\nx:\n  script: $[[ inputs.name ]]\n"},
        )


def test_a_remote_include_is_fetched_once_over_https(tmp_path: Path) -> None:
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return b"remote: {script: r}\n"

    plan = make_plan(
        tmp_path,
        "include:\n  - https://example.com/ci.yml\n  - remote: https://example.com/ci.yml\n",
        fetch=fetch,
    )
    assert [j.name for j in plan.jobs] == ["remote"]
    assert fetched == ["https://example.com/ci.yml"]


def test_a_remote_failure_is_one_line(tmp_path: Path) -> None:
    def fetch(url: str) -> bytes:
        raise ValueError("a timeout error")

    with pytest.raises(JobFileError) as caught:
        make_plan(tmp_path, "include:\n  remote: https://example.com/ci.yml\njob: {script: x}\n", fetch=fetch)
    assert str(caught.value).endswith(
        ".gitlab-ci.yml:2: Remote file `https://example.com/ci.yml` "
        "could not be fetched because of a timeout error"
    )
    with pytest.raises(JobFileError, match="is not a valid https URL"):
        make_plan(tmp_path, "include:\n  remote: http://example.com/ci.yml\njob: {script: x}\n", fetch=fetch)


@pytest.mark.parametrize(
    "kind", ["project: group/p\n    file: ci.yml", "template: Auto-DevOps.gitlab-ci.yml", "component: x/y@1"]
)
def test_server_only_includes_are_refused_in_one_line(tmp_path: Path, kind: str) -> None:
    with pytest.raises(JobFileError) as caught:
        make_plan(tmp_path, f"include:\n  - {kind}\njob: {{script: x}}\n")
    assert "needs a GitLab server" in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_or_escaping_local_file_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (tmp_path / "outside.yml").write_text("x: {script: x}\n")
    with pytest.raises(JobFileError, match=r"Local file `nope\.yml` does not exist!"):
        make_plan(project, "include: nope.yml\njob: {script: x}\n")
    with pytest.raises(JobFileError, match="is outside the project"):
        make_plan(project, "include: ../outside.yml\njob: {script: x}\n")


def test_an_error_in_an_included_job_names_the_included_file(tmp_path: Path) -> None:
    with pytest.raises(JobFileError) as caught:
        make_plan(
            tmp_path, "include: ci/jobs.yml\n", files={"ci/jobs.yml": "job:\n  script: x\n  stagee: t\n"}
        )
    assert str(caught.value) == f"{tmp_path}/ci/jobs.yml:3: jobs:job config contains unknown keys: stagee"


def test_fetching_stops_at_the_size_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server sending more than the bound: refused after reading about the bound, not the whole body."""
    sent: list[int] = []

    class Endless(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(1000):
                    self.wfile.write(chunk)
                    sent.append(len(chunk))
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    monkeypatch.setattr(include, "MAX_REMOTE_BYTES", 256 * 1024)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(ValueError, match="larger than"):
            include.fetch_remote(f"http://127.0.0.1:{server.server_address[1]}/ci.yml")
    finally:
        server.shutdown()
        server.server_close()
    assert sum(sent) < 1000 * 65536
