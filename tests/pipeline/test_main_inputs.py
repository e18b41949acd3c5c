"""The main file's own `spec:inputs` header, with values given on the command line (`--input`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kuberunner.errors import JobFileError

from .helpers import make_plan

MAIN = """
spec:
  inputs:
    env:
      options: [staging, production]
    replicas:
      type: number
      default: 1
    fast:
      type: boolean
      default: false
    targets:
      type: array
      default: [a]
    version:
      default: v1.0
      regex: ^v\\d+\\.\\d+$
---
deploy-$[[ inputs.env ]]:
  variables:
    REPLICAS: $[[ inputs.replicas ]]
    FAST: $[[ inputs.fast ]]
    VERSION: $[[ inputs.version ]]
  parallel:
    matrix:
      - TARGET: $[[ inputs.targets ]]
  script: echo deploying $[[ inputs.version ]] to $[[ inputs.env ]]
"""


def test_inputs_from_the_command_line_are_interpolated_by_type(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path, MAIN, inputs={"env": "production", "replicas": "3", "targets": "[x, y]", "fast": "true"}
    )
    assert [j.name for j in plan.jobs] == ["deploy-production: [x]", "deploy-production: [y]"]
    job = plan.jobs[0].spec
    assert job.script == ("echo deploying v1.0 to production",)
    variables = dict(job.variables)
    assert [variables[k] for k in ("REPLICAS", "FAST", "VERSION", "TARGET")] == ["3", "true", "v1.0", "x"]
    assert plan.warnings == ()


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        pytest.param({}, ":4: `env` input: required value has not been provided", id="missing"),
        pytest.param({"env": "staging", "colour": "red"}, ": unknown input arguments: colour", id="unknown"),
        pytest.param(
            {"env": "dev"},
            ":4: `env` input: `dev` cannot be used because it is not in the list of allowed options",
            id="not-an-option",
        ),
        pytest.param(
            {"env": "staging", "replicas": "many"},
            ":6: `replicas` input: provided value is not a number",
            id="not-a-number",
        ),
        pytest.param(
            {"env": "staging", "fast": "yes"},
            ":9: `fast` input: provided value is not a boolean",
            id="not-a-boolean",
        ),
        pytest.param(
            {"env": "staging", "version": "1.0"},
            ":15: `version` input: provided value does not match required RegEx pattern",
            id="regex",
        ),
    ],
)
def test_bad_inputs_are_refused_naming_the_input(
    tmp_path: Path, inputs: dict[str, str], message: str
) -> None:
    with pytest.raises(JobFileError) as caught:
        make_plan(tmp_path, MAIN, inputs=inputs)
    assert str(caught.value) == f"{tmp_path / '.gitlab-ci.yml'}{message}"


def test_an_input_for_a_file_without_a_header_is_unknown(tmp_path: Path) -> None:
    with pytest.raises(JobFileError) as caught:
        make_plan(tmp_path, "build:\n  script: b\n", inputs={"env": "x"})
    assert str(caught.value).endswith(".gitlab-ci.yml: unknown input arguments: env")


def test_a_default_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    text = "spec:\n  inputs:\n    n:\n      type: number\n      default: ten\n---\nb:\n  script: x\n"
    with pytest.raises(JobFileError) as caught:
        make_plan(tmp_path, text)
    assert str(caught.value).endswith(":3: `n` input: default value is not a number")


def test_an_input_value_is_text_never_yaml_or_another_input(tmp_path: Path) -> None:
    hostile = "$[[ inputs.version ]]\n  script: echo injected"
    plan = make_plan(tmp_path, MAIN, inputs={"env": "staging", "targets": json.dumps([hostile])})
    variables = dict(plan.jobs[0].spec.variables)
    assert variables["TARGET"] == hostile
    assert plan.jobs[0].spec.script == ("echo deploying v1.0 to staging",)


def test_an_oversized_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JobFileError) as caught:
        make_plan(tmp_path, MAIN, inputs={"env": "x" * (65 * 1024)})
    assert str(caught.value).endswith(": `env` input: the value is longer than 64 KiB")
