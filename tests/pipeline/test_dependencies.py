"""Whose artifacts a job gets: GitLab's interplay of stages, `needs` (with `artifacts:`) and
`dependencies`."""

from __future__ import annotations

from pathlib import Path

from .helpers import make_plan

PIPELINE = """
build: {stage: build, script: b}
docs: {stage: build, script: d}
lint: {stage: test, script: l}
"""


def sources(tmp_path: Path, job: str) -> tuple[str, ...]:
    plan = make_plan(tmp_path, PIPELINE + job)
    return plan.artifact_sources(next(j for j in plan.jobs if j.name == "pack"))


def test_without_needs_or_dependencies_every_earlier_stage_gives_its_artifacts(tmp_path: Path) -> None:
    assert sources(tmp_path, "pack: {stage: deploy, script: p}") == ("build", "docs", "lint")


def test_dependencies_narrow_the_earlier_stages_and_an_empty_list_takes_none(tmp_path: Path) -> None:
    assert sources(tmp_path, "pack: {stage: deploy, dependencies: [docs], script: p}") == ("docs",)
    assert sources(tmp_path, "pack: {stage: deploy, dependencies: [], script: p}") == ()


def test_needs_give_the_artifacts_of_the_jobs_that_want_them(tmp_path: Path) -> None:
    job = "pack: {stage: deploy, needs: [build, {job: docs, artifacts: false}], script: p}"
    assert sources(tmp_path, job) == ("build",)


def test_dependencies_with_needs_take_only_what_both_allow(tmp_path: Path) -> None:
    # GitLab intersects them: a need without artifacts stays without, and `[]` empties the set.
    both = "needs: [build, {job: docs, artifacts: false}]"
    assert sources(tmp_path, f"pack: {{stage: deploy, {both}, dependencies: [docs], script: p}}") == ()
    assert sources(tmp_path, f"pack: {{stage: deploy, {both}, dependencies: [build], script: p}}") == (
        "build",
    )
    assert sources(tmp_path, "pack: {stage: deploy, needs: [build], dependencies: [], script: p}") == ()


def test_a_parallel_dependency_stands_for_every_node(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path,
        """
        build: {stage: build, parallel: 2, script: b}
        docs: {stage: build, script: d}
        pack: {stage: test, dependencies: [build], script: p}
        """,
    )
    pack = next(j for j in plan.jobs if j.name == "pack")
    assert plan.artifact_sources(pack) == ("build 1/2", "build 2/2")
