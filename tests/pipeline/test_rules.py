"""rules, workflow:rules and only/except decide which jobs exist and how they run."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuberunner.errors import JobFileError

from .helpers import PUSH_ON_MAIN, make_plan, summary

RULED = """
deploy:
  stage: deploy
  script: d
  rules:
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $CI_PIPELINE_SOURCE == "push"
      when: manual
    - if: $CI_COMMIT_BRANCH =~ /^feature\\//
      allow_failure: true
      variables: {TARGET: staging}
    - when: never
"""


def test_the_first_matching_rule_decides(tmp_path: Path) -> None:
    on_main = make_plan(tmp_path, RULED)
    assert summary(on_main) == [("deploy", "deploy", "manual", None)]
    # A manual job from rules may not fail unless it says so (GitLab), so it blocks later stages.
    assert on_main.jobs[0].allow_failure is False
    feature = {**PUSH_ON_MAIN, "CI_COMMIT_BRANCH": "feature/x", "CI_COMMIT_REF_NAME": "feature/x"}
    plan = make_plan(tmp_path, RULED, variables=feature)
    assert summary(plan) == [("deploy", "deploy", "on_success", None)]
    assert plan.jobs[0].allow_failure is True
    assert ("TARGET", "staging") in plan.jobs[0].spec.variables


def test_when_never_and_no_matching_rule_leave_the_job_out(tmp_path: Path) -> None:
    other = {**PUSH_ON_MAIN, "CI_COMMIT_BRANCH": "dev", "CI_COMMIT_REF_NAME": "dev"}
    plan = make_plan(tmp_path, RULED + "build: {script: b}\n", variables=other)
    assert [j.name for j in plan.jobs] == ["build"]
    assert plan.excluded == ("deploy",)
    plan = make_plan(tmp_path, "job:\n  script: x\n  rules:\n    - if: $NOPE\nbuild: {script: b}\n")
    assert plan.excluded == ("job",)


def test_rules_see_the_jobs_own_and_global_variables(tmp_path: Path) -> None:
    text = """
    variables: {GLOBAL: "yes"}
    job:
      script: x
      variables: {MINE: "1"}
      rules:
        - if: $GLOBAL == "yes" && $MINE == "1"
    """
    assert [j.name for j in make_plan(tmp_path, text).jobs] == ["job"]


def test_exists_looks_at_the_project_files(tmp_path: Path) -> None:
    text = "job:\n  script: x\n  rules:\n    - exists: [docs/**/*.md, Dockerfile]\nother: {script: o}\n"
    assert [j.name for j in make_plan(tmp_path, text).jobs] == ["other"]
    assert [j.name for j in make_plan(tmp_path, text, files={"docs/a/b.md": "x"}).jobs] == ["job", "other"]


def test_changes_compare_with_the_changed_files(tmp_path: Path) -> None:
    text = "job:\n  script: x\n  rules:\n    - changes: [src/**/*.py]\nother: {script: o}\n"
    assert [j.name for j in make_plan(tmp_path, text, changed=frozenset({"README.md"})).jobs] == ["other"]
    changed = frozenset({"src/pkg/mod.py"})
    assert [j.name for j in make_plan(tmp_path, text, changed=changed).jobs] == ["job", "other"]
    # Nothing to compare with (no git): GitLab counts every `changes:` as true.
    assert [j.name for j in make_plan(tmp_path, text, changed=None).jobs] == ["job", "other"]


def test_workflow_rules_can_drop_the_whole_pipeline_or_set_variables(tmp_path: Path) -> None:
    text = (
        "workflow:\n  rules:\n    - if: $CI_COMMIT_TAG\n"
        '    - if: $CI_COMMIT_BRANCH == "main"\n      variables: {W: w}\njob: {script: x}\n'
    )
    plan = make_plan(tmp_path, text)
    assert not plan.workflow_excluded and ("W", "w") in plan.jobs[0].spec.variables
    other = {**PUSH_ON_MAIN, "CI_COMMIT_BRANCH": "dev"}
    assert make_plan(tmp_path, text, variables=other).workflow_excluded


def test_workflow_variables_override_global_ones_and_job_variables_override_both(tmp_path: Path) -> None:
    text = """
    variables: {A: global, B: global}
    workflow:
      rules:
        - variables: {A: workflow, B: workflow}
    job:
      script: x
      variables: {B: job}
      rules:
        - if: $A == "workflow" && $B == "job"
    """
    plan = make_plan(tmp_path, text)
    assert [j.name for j in plan.jobs] == ["job"]
    variables = dict(plan.jobs[0].spec.variables)  # the last of a name wins, as when applied
    assert (variables["A"], variables["B"]) == ("workflow", "job")


def test_workflow_rules_see_global_variables(tmp_path: Path) -> None:
    text = 'variables: {DEPLOY: "%s"}\nworkflow:\n  rules:\n    - if: $DEPLOY == "yes"\njob: {script: x}\n'
    assert not make_plan(tmp_path, text % "yes").workflow_excluded
    assert make_plan(tmp_path, text % "no").workflow_excluded


@pytest.mark.parametrize(
    ("only_except", "runs"),
    [
        ("only: [main]", True),
        ("only: [dev]", False),
        ("only: [/^ma/]", True),
        ("only: [branches]", True),
        ("only: [tags]", False),
        ("except: [main]", False),
        ("except: [tags]", True),
        ('only: {refs: [main], variables: [$CI_PIPELINE_SOURCE == "push"]}', True),
        ("only: {variables: [$NOPE]}", False),
        ("except: {variables: [$CI_COMMIT_BRANCH]}", False),
    ],
)
def test_only_and_except(tmp_path: Path, only_except: str, runs: bool) -> None:
    plan = make_plan(tmp_path, f"job:\n  script: x\n  {only_except}\nother: {{script: o}}\n")
    assert ("job" in [j.name for j in plan.jobs]) is runs


def test_an_invalid_if_names_file_line_and_job(tmp_path: Path) -> None:
    with pytest.raises(JobFileError) as caught:
        make_plan(tmp_path, "job:\n  script: x\n  rules:\n    - if: $A ==\n")
    assert str(caught.value).startswith(
        f"{tmp_path}/.gitlab-ci.yml:4: jobs:job:rules:rule if invalid expression syntax"
    )
