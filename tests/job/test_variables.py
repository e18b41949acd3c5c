"""The one rule on which variables can reach a job, and the job timeout's bound (issue 10, item 11)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kuberunner.errors import JobFileError
from kuberunner.job.durations import MAX_JOB_TIMEOUT
from kuberunner.job.gitlab_ci import parse_pipeline
from kuberunner.job.variables import variable_problem


@pytest.mark.parametrize(("key", "value"), [("A", ""), ("_x9", "any \n value"), ("KUBERUNNER_STAGE", "x")])
def test_shell_names_with_nul_free_values_are_fine(key: str, value: str) -> None:
    assert variable_problem(key, value) is None


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("A-B", "x", "variable 'A-B' is not a valid variable name"),
        ("9A", "x", "variable '9A' is not a valid variable name"),
        ("", "x", "variable '' is not a valid variable name"),
        ("A", "a\0b", "variable 'A' holds a NUL byte"),
    ],
)
def test_other_variables_are_refused_with_a_reason(key: str, value: str, expected: str) -> None:
    problem = variable_problem(key, value)
    assert problem is not None and problem.startswith(expected)


@pytest.mark.parametrize(
    "timeout", [str(MAX_JOB_TIMEOUT + 1), "99999999999999999999999999999", "'5 weeks'", "'2 months'"]
)
def test_a_timeout_past_one_month_is_refused_at_its_line(timeout: str) -> None:
    text = textwrap.dedent(f"""\
        build:
          script: x
          timeout: {timeout}
        """)
    with pytest.raises(JobFileError) as raised:
        parse_pipeline(text, Path(".gitlab-ci.yml"))
    assert str(raised.value) == (
        ".gitlab-ci.yml:3: job 'build': "
        f"'timeout' must be at most 1 month ({MAX_JOB_TIMEOUT} seconds), as in GitLab"
    )


def test_one_month_itself_is_accepted() -> None:
    text = f"build:\n  script: x\n  timeout: {MAX_JOB_TIMEOUT}\n"
    assert parse_pipeline(text, Path(".gitlab-ci.yml")).jobs[0].timeout_seconds == MAX_JOB_TIMEOUT
