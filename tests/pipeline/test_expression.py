"""GitLab's `rules:if` expression language."""

from __future__ import annotations

import pytest

from kuberunner.pipeline.plan.expression import evaluate

VARS = {"BRANCH": "main", "EMPTY": "", "TAG": "v1.2.3", "PATTERN": "/^v[0-9]+/", "SOURCE": "push"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('$BRANCH == "main"', True),
        ("$BRANCH == 'main'", True),
        ('$BRANCH != "main"', False),
        ('"main" == $BRANCH', True),
        ("$BRANCH", True),
        ("$EMPTY", False),
        ("$UNDEFINED", False),
        ("$UNDEFINED == null", True),
        ("$EMPTY == null", False),
        ('$EMPTY == ""', True),
        ("$BRANCH != null", True),
        ("${BRANCH} == $BRANCH", True),
        ("$TAG =~ /^v[0-9]+\\.[0-9]+/", True),
        ("$TAG !~ /^v[0-9]+/", False),
        ("$BRANCH =~ /MAIN/i", True),
        ("$BRANCH =~ /MAIN/", False),
        ("$UNDEFINED =~ /.*/", False),
        ("$TAG =~ $PATTERN", True),
        ('$BRANCH == "main" && $SOURCE == "push"', True),
        ('$BRANCH == "dev" || $SOURCE == "push"', True),
        ('$BRANCH == "dev" || $SOURCE == "push" && $EMPTY', False),
        ('($BRANCH == "dev" || $SOURCE == "push") && $TAG', True),
        ('$BRANCH == "dev" || ($SOURCE == "push" && $EMPTY)', False),
        ('"a \\" quote" == "a \\" quote"', True),
    ],
)
def test_expressions_evaluate_as_in_gitlab(text: str, expected: bool) -> None:
    assert evaluate(text, VARS) is expected


@pytest.mark.parametrize(
    "text",
    [
        "$BRANCH ==",
        "== $BRANCH",
        "($BRANCH",
        "$BRANCH = 'x'",
        "",
        "$BRANCH =~ 'main'",
        "$A =~ /x/q",
        "$A =~ /(/",
    ],
)
def test_invalid_expressions_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        evaluate(text, VARS)


def test_an_overlong_expression_is_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match="longer than"):
        evaluate("$A || " * 1000 + "$A", VARS)
