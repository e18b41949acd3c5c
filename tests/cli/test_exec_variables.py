"""Job variables `kuberunner exec` refuses or hides (issue 10, items 7 and 11): masked values kept
out of argv, internal names a job cannot take over, invalid names and NUL bytes, absurd timeouts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .execution import Cluster, Running, Target, pipeline, run_exec

SECRET = "s3cr3t-Value-4242"


def test_a_masked_variable_file_keeps_the_value_out_of_argv_and_the_trace(
    cluster: Cluster, tmp_path: Path
) -> None:
    secrets = tmp_path.parent / f"{tmp_path.name}.masked"
    secrets.write_text(f"# for the deploy job\nDEPLOY_TOKEN={SECRET}\n\nOTHER=x=y\n")
    job = Running(
        cluster,
        tmp_path,
        pipeline(script=['echo "token: $DEPLOY_TOKEN other: $OTHER"', "sleep 4290"]),
        "--masked-var-file",
        str(secrets),
        "--timeout",
        "60",
    )
    job.wait_for(b"token: [MASKED] other: [MASKED]\n")
    cmdline = Path(f"/proc/{job.process.pid}/cmdline").read_bytes()
    job.process.terminate()
    done = job.finish(timeout=30)
    assert str(secrets).encode() in cmdline and SECRET.encode() not in cmdline
    assert SECRET.encode() not in done.trace and SECRET.encode() not in done.stdout
    assert b"x=y" not in done.trace


def test_masked_variables_named_in_the_environment(cluster: Cluster, tmp_path: Path) -> None:
    done = run_exec(
        cluster,
        tmp_path,
        pipeline(script=['test "$DEPLOY_TOKEN" = ' + SECRET, 'echo "token: $DEPLOY_TOKEN"']),
        env={"KUBERUNNER_MASKED_VARS": "DEPLOY_TOKEN", "DEPLOY_TOKEN": SECRET},
    )
    assert done.status == 0, done.trace
    assert b"token: [MASKED]\n" in done.trace and SECRET.encode() not in done.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("A=1\nNO_EQUALS_SIGN\n", ":2: expected KEY=VALUE"),
        (
            "BAD-NAME=1\n",
            ":1: variable 'BAD-NAME' is not a valid variable name "
            "(letters, digits and _, not starting with a digit)",
        ),
    ],
    ids=["no-equals", "bad-name"],
)
def test_a_bad_masked_variable_file_line_is_one_line_and_exit_2(
    cluster: Cluster, tmp_path: Path, content: str, expected: str
) -> None:
    secrets = tmp_path.parent / f"{tmp_path.name}.masked"
    secrets.write_text(content)
    done = run_exec(cluster, tmp_path, pipeline(script=["true"]), "--masked-var-file", str(secrets))
    assert done.status == 2
    assert done.stderr == f"kuberunner: error: {secrets}{expected}\n", done.stderr


def test_a_masked_variable_name_missing_from_the_environment_is_exit_2(
    cluster: Cluster, tmp_path: Path
) -> None:
    env = {"KUBERUNNER_MASKED_VARS": "NOT_SET_ANYWHERE"}
    done = run_exec(cluster, tmp_path, pipeline(script=["true"]), env=env)
    assert done.status == 2
    assert done.stderr.count("\n") == 1 and "NOT_SET_ANYWHERE" in done.stderr, done.stderr


def test_a_job_variable_named_like_the_stage_token_does_not_escape_the_timeout(
    target: Target, tmp_path: Path
) -> None:
    script = ["export KUBERUNNER_STAGE=mine", "sh -c 'sleep 4293 & sleep 4294' & sleep 4292"]
    after = ["if pgrep -f 'sleep 429[234]' >/dev/null; then echo left behind; else echo all gone; fi"]
    done = run_exec(
        target.cluster,
        tmp_path,
        pipeline(variables={"KUBERUNNER_STAGE": "job-owned"}, script=script, after_script=after),
        "--timeout",
        "3",
        *target.args,
    )
    assert done.status == 4, done.trace
    assert b"\nall gone\n" in done.trace, done.trace
    assert subprocess.run(["pgrep", "-f", "sleep 429[2-5]"], capture_output=True).stdout == b""


def test_the_legacy_strategy_also_kills_a_job_that_sets_the_stage_variable(
    cluster: Cluster, tmp_path: Path
) -> None:
    script = ["export KUBERUNNER_STAGE=mine", "sleep 4295"]
    after = ["if pgrep -f 'sleep 4295' >/dev/null; then echo left behind; else echo all gone; fi"]
    done = run_exec(
        cluster,
        tmp_path,
        pipeline(variables={"KUBERUNNER_STAGE": "job-owned"}, script=script, after_script=after),
        "--timeout",
        "3",
        env={"FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY": "true"},
    )
    assert done.status == 4, done.trace
    assert b"\nall gone\n" in done.trace, done.trace
    assert subprocess.run(["pgrep", "-f", "sleep 429[2-5]"], capture_output=True).stdout == b""


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"BAD-NAME": "x"}, "variable 'BAD-NAME' is not a valid variable name"),
        ({"WITH_NUL": "a\0b"}, "variable 'WITH_NUL' holds a NUL byte"),
    ],
    ids=["bad-name", "nul-byte"],
)
def test_a_variable_no_shell_can_export_is_a_file_line_error(
    cluster: Cluster, tmp_path: Path, variables: dict[str, str], expected: str
) -> None:
    text = "job:\n  script: [echo should not run]\n  variables:\n    " + "".join(
        f"{json.dumps(k)}: {json.dumps(v)}" for k, v in variables.items()
    )
    done = run_exec(cluster, tmp_path, text + "\n")
    assert done.status == 2, done.trace
    assert done.stderr.count("\n") == 1 and ".gitlab-ci.yml:4: job 'job': " + expected in done.stderr, (
        done.stderr
    )


def test_a_var_option_with_a_bad_name_is_exit_2(cluster: Cluster, tmp_path: Path) -> None:
    done = run_exec(cluster, tmp_path, pipeline(script=["true"]), "--var", "BAD-NAME=1")
    assert done.status == 2
    assert "variable 'BAD-NAME' is not a valid variable name" in done.stderr


@pytest.mark.parametrize(
    "timeout", ["99999999999999999999999999999", '"99999999999999999999999999999"', '"2 months"']
)
def test_a_timeout_past_one_month_is_a_file_line_error(
    cluster: Cluster, tmp_path: Path, timeout: str
) -> None:
    done = run_exec(cluster, tmp_path, f"job:\n  script: [echo should not run]\n  timeout: {timeout}\n")
    assert done.status == 2
    assert done.stderr == (
        f"kuberunner: error: {tmp_path / '.gitlab-ci.yml'}:3: job 'job': "
        "'timeout' must be at most 1 month (2629746 seconds), as in GitLab\n"
    ), done.stderr


def test_a_timeout_option_past_one_month_is_exit_2(cluster: Cluster, tmp_path: Path) -> None:
    done = run_exec(cluster, tmp_path, pipeline(script=["true"]), "--timeout", "1e30")
    assert done.status == 2
    assert "--timeout" in done.stderr and "Traceback" not in done.stderr
