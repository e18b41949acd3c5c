"""Stages, needs, when, allow_failure, parallel and matrix: the pipeline GitLab would create."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuberunner.errors import JobFileError

from .helpers import make_plan, summary


def test_jobs_are_ordered_by_stage_not_by_file_order(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path,
        """
        deploy: {stage: deploy, script: d}
        test: {stage: test, script: t}
        build: {stage: build, script: b}
        first: {stage: .pre, script: p}
        last: {stage: .post, script: l}
        """,
    )
    assert [j.name for j in plan.jobs] == ["first", "build", "test", "deploy", "last"]
    assert plan.stages == (".pre", "build", "test", "deploy", ".post")


def test_declared_stages_replace_the_default_ones_and_the_default_stage_is_test(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, "stages: [lint, test]\ncheck: {script: c}\nstyle: {stage: lint, script: s}\n")
    assert plan.stages == (".pre", "lint", "test", ".post")
    assert summary(plan) == [("lint", "style", "on_success", None), ("test", "check", "on_success", None)]


def test_needs_resolve_to_jobs_and_an_empty_list_starts_at_once(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path,
        """
        build: {stage: build, script: b}
        lint: {stage: test, needs: [], script: l}
        test: {stage: test, needs: [build, {job: lint, artifacts: false}], script: t}
        """,
    )
    assert summary(plan) == [
        ("build", "build", "on_success", None),
        ("test", "lint", "on_success", ()),
        ("test", "test", "on_success", ("build", "lint")),
    ]
    assert [n.artifacts for n in plan.jobs[2].needs or ()] == [True, False]


def test_parallel_jobs_are_named_as_gitlab_names_them_with_node_variables(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, "test:\n  parallel: 3\n  script: t\nafter:\n  needs: [test]\n  script: a\n")
    assert [j.name for j in plan.jobs] == ["test 1/3", "test 2/3", "test 3/3", "after"]
    assert dict(plan.jobs[1].spec.variables)["CI_NODE_INDEX"] == "2"
    assert dict(plan.jobs[1].spec.variables)["CI_NODE_TOTAL"] == "3"
    assert plan.jobs[1].spec.name == "test 2/3"
    assert [n.name for n in plan.jobs[3].needs or ()] == ["test 1/3", "test 2/3", "test 3/3"]


def test_a_matrix_expands_every_combination_in_order(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path,
        """
        build:
          parallel:
            matrix:
              - OS: [linux, mac]
                ARCH: [amd64, arm64]
              - OS: windows
                ARCH: amd64
          script: b
        package:
          needs:
            - job: build
              parallel:
                matrix:
                  - OS: linux
                    ARCH: arm64
          script: p
        """,
    )
    names = [j.name for j in plan.jobs]
    assert names == [
        "build: [linux, amd64]",
        "build: [linux, arm64]",
        "build: [mac, amd64]",
        "build: [mac, arm64]",
        "build: [windows, amd64]",
        "package",
    ]
    variables = dict(plan.jobs[4].spec.variables)
    assert (variables["OS"], variables["ARCH"], variables["CI_NODE_INDEX"], variables["CI_NODE_TOTAL"]) == (
        "windows",
        "amd64",
        "5",
        "5",
    )
    assert [n.name for n in plan.jobs[5].needs or ()] == ["build: [linux, arm64]"]


def test_manual_jobs_are_allowed_to_fail_and_only_run_when_asked(tmp_path: Path) -> None:
    text = "build: {script: b}\ndeploy: {stage: deploy, when: manual, script: d}\n"
    plan = make_plan(tmp_path, text)
    assert plan.jobs[1].when == "manual" and plan.jobs[1].allow_failure
    assert make_plan(tmp_path, text, names=("deploy",)).jobs[0].when == "on_success"
    assert make_plan(tmp_path, text, manual=True).jobs[1].when == "on_success"


def test_named_jobs_run_alone_and_needs_outside_them_are_dropped(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path,
        "build: {stage: build, script: b}\ntest: {needs: [build], script: t}\nother: {script: o}\n",
        names=("test",),
    )
    assert summary(plan) == [("test", "test", "on_success", ())]


def test_a_named_job_that_does_not_exist_lists_the_jobs(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match=r"no job named 'tset' \(jobs: build, test\)"):
        make_plan(tmp_path, "build: {script: b}\ntest: {script: t}\n", names=("tset",))


def test_a_named_job_that_rules_exclude_says_so(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="job 'deploy' is not in this pipeline: its rules"):
        make_plan(tmp_path, "deploy:\n  script: d\n  rules: [{if: $NOPE}]\n", names=("deploy",))


def test_allow_failure_exit_codes(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, "job:\n  script: x\n  allow_failure:\n    exit_codes: [137, 255]\n")
    job = plan.jobs[0]
    assert job.failure_allowed(137) and not job.failure_allowed(1) and not job.failure_allowed(None)


def test_delayed_jobs_keep_their_start_in(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, "job: {script: x, when: delayed, start_in: 2 seconds}\n")
    assert (plan.jobs[0].when, plan.jobs[0].start_in) == ("delayed", 2)


# --- validation: GitLab's messages, FILE:LINE ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("build:\n  script: b\n  foo: 1\n", ".gitlab-ci.yml:3: jobs:build config contains unknown keys: foo"),
        (
            "test:\n  stage: tset\n  script: t\n",
            ".gitlab-ci.yml:2: test job: chosen stage does not exist; "
            "available stages are .pre, build, test, deploy, .post",
        ),
        (
            "build: {script: b}\ntest:\n  script: t\n  needs:\n    - x\n",
            ".gitlab-ci.yml:5: test job: undefined need: x",
        ),
        (
            "test:\n  script: t\n  needs: build\nbuild: {stage: build, script: b}\n",
            ".gitlab-ci.yml:3: jobs:test:needs config can only be a hash or an array",
        ),
        (
            "test:\n  stage: build\n  script: t\n  needs:\n    - deploy\n"
            "deploy: {stage: deploy, script: d}\n",
            ".gitlab-ci.yml:5: test job: need deploy is not defined in current or prior stages",
        ),
        (
            "test:\n  script: t\n  dependencies:\n    - nope\n",
            ".gitlab-ci.yml:4: test job: undefined dependency: nope",
        ),
        (
            "build: {stage: build, script: b}\nother: {stage: build, script: o}\n"
            "test:\n  script: t\n  needs: [build]\n  dependencies:\n    - other\n",
            ".gitlab-ci.yml:7: jobs:test dependencies the other should be part of needs",
        ),
        (
            "test:\n  script: t\n  when: sometimes\n",
            ".gitlab-ci.yml:3: jobs:test when should be one of: on_success, on_failure, always, manual, "
            "delayed, never",
        ),
        (
            "test:\n  script: t\n  when: always\n  rules:\n    - when: always\n",
            ".gitlab-ci.yml:4: jobs:test may not be used with `rules`: when",
        ),
        (
            "test:\n  script: t\n  allow_failure: sometimes\n",
            ".gitlab-ci.yml:3: jobs:test allow_failure should be a hash or a boolean value",
        ),
        (
            "stages: build\ntest: {script: t}\n",
            ".gitlab-ci.yml:1: stages config should be an array of strings",
        ),
        (
            "test:\n  script: t\n  parallel: 201\n",
            ".gitlab-ci.yml:3: jobs:test:parallel config must be less than or equal to 200",
        ),
        (
            "test:\n  script: t\n  rules:\n    - iff: $X\n",
            ".gitlab-ci.yml:4: jobs:test:rules:rule config contains unknown keys: iff",
        ),
        (
            "deploy:\n  script: d\n  when: delayed\n",
            ".gitlab-ci.yml:2: jobs:deploy start in should be specified for delayed job",
        ),
    ],
)
def test_malformed_pipelines_are_refused_with_gitlabs_message(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(JobFileError) as caught:
        make_plan(tmp_path, text)
    assert str(caught.value) == str(tmp_path / message)


def test_a_needs_cycle_within_a_stage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match=r"circular dependencies: (a -> b -> a|b -> a -> b)"):
        make_plan(tmp_path, "a: {needs: [b], script: a}\nb: {needs: [a], script: b}\n")


def test_needing_a_job_that_rules_exclude_is_refused_unless_optional(tmp_path: Path) -> None:
    text = "build:\n  script: b\n  rules:\n    - when: never\ntest:\n  script: t\n  needs: [{job: build%s}]\n"
    with pytest.raises(
        JobFileError, match="'test' job needs 'build' job, but 'build' does not exist in the pipeline"
    ):
        make_plan(tmp_path, text % "")
    plan = make_plan(tmp_path, text % ", optional: true")
    assert summary(plan) == [("test", "test", "on_success", ())]
    assert plan.excluded == ("build",)
