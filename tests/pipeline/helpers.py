"""Plans of pipelines written into a temporary project, as `kuberunner exec` makes them."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

from kuberunner.pipeline.plan.build import PlanRequest, plan_pipeline
from kuberunner.pipeline.plan.include import Fetch
from kuberunner.pipeline.plan.model import Plan

PUSH_ON_MAIN = {
    "CI_PIPELINE_SOURCE": "push",
    "CI_COMMIT_BRANCH": "main",
    "CI_COMMIT_REF_NAME": "main",
    "CI_DEFAULT_BRANCH": "main",
}


def no_fetch(url: str) -> bytes:
    raise AssertionError(f"unexpected fetch of {url}")


def make_plan(
    project: Path,
    text: str,
    *,
    variables: Mapping[str, str] = PUSH_ON_MAIN,
    names: tuple[str, ...] = (),
    manual: bool = False,
    changed: frozenset[str] | None = None,
    files: Mapping[str, str] | None = None,
    fetch: Fetch = no_fetch,
    inputs: Mapping[str, str] | None = None,
) -> Plan:
    for name, content in (files or {}).items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(textwrap.dedent(content))
    path = project / ".gitlab-ci.yml"
    path.write_text(textwrap.dedent(text))
    request = PlanRequest(
        file=path,
        variables=variables,
        names=names,
        manual=manual,
        changed=changed,
        fetch=fetch,
        inputs=inputs or {},
    )
    return plan_pipeline(request)


def summary(plan: Plan) -> list[tuple[str, str, str, tuple[str, ...] | None]]:
    """(stage, name, when, needs) per job, in plan order."""
    return [
        (j.stage, j.name, j.when, None if j.needs is None else tuple(n.name for n in j.needs))
        for j in plan.jobs
    ]
