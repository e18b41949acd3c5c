"""The scheduler through a fake job runner: what runs, in which order, and the pipeline's status."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kuberunner.pipeline.plan.model import Plan, PlannedJob
from kuberunner.pipeline.scheduler import JobEnd, Outcome, RunResult, Status, run_plan

from .helpers import make_plan


class FakeJobs:
    """Runs no pod: each job ends with the JobEnd given for it (0 by default) once its gate opens."""

    def __init__(self, ends: dict[str, JobEnd] | None = None, *, gated: bool = False) -> None:
        self.ends = ends or {}
        self.log: list[str] = []
        self.gated = gated
        self.gates: dict[str, asyncio.Event] = {}
        self.running = 0
        self.most_running = 0
        self.outcomes: list[Outcome] = []

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def run(self, job: PlannedJob) -> JobEnd:
        self.log.append(f"start {job.name}")
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        if self.gated:
            await self.gate(job.name).wait()
        else:
            await asyncio.sleep(0)
        self.running -= 1
        self.log.append(f"end {job.name}")
        return self.ends.get(job.name, JobEnd(0))

    def started(self, job: PlannedJob) -> None:
        pass

    def ended(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


async def run(
    plan: Plan, jobs: FakeJobs, *, concurrency: int = 10, cancel: asyncio.Event | None = None
) -> RunResult:
    return await run_plan(
        plan, run_job=jobs.run, events=jobs, concurrency=concurrency, cancel=cancel or asyncio.Event()
    )


def statuses(result: RunResult) -> dict[str, str]:
    return {o.job.name: o.status.value for o in result.outcomes}


async def until(condition: object) -> None:
    """Let the scheduler's tasks run until `condition()` holds (a bounded number of loop turns)."""
    for _ in range(1000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


THREE_STAGES = """
build: {stage: build, script: b}
lint: {stage: build, script: l}
test: {stage: test, needs: [build], script: t}
slow-test: {stage: test, script: s}
deploy: {stage: deploy, script: d}
"""


async def test_a_needs_shortcut_starts_before_its_stage_would(tmp_path: Path) -> None:
    jobs = FakeJobs(gated=True)
    task = asyncio.create_task(run(make_plan(tmp_path, THREE_STAGES), jobs))
    await until(lambda: jobs.log == ["start build", "start lint"])
    jobs.gate("build").set()
    # `test` needs only build: it starts while lint still runs; slow-test waits for the whole stage.
    await until(lambda: "start test" in jobs.log)
    assert "start slow-test" not in jobs.log and "end lint" not in jobs.log
    for name in ("lint", "test", "slow-test", "deploy"):
        jobs.gate(name).set()
    result = await task
    assert result.exit_status == 0
    assert jobs.log.index("start slow-test") > jobs.log.index("end lint")
    assert jobs.log[-2:] == ["start deploy", "end deploy"]


async def test_concurrency_bounds_the_jobs_running_at_once(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, "".join(f"j{i}: {{script: x}}\n" for i in range(6)))
    jobs = FakeJobs()
    await run(plan, jobs, concurrency=2)
    assert jobs.most_running == 2 and len(jobs.log) == 12


async def test_after_a_failure_on_success_jobs_are_skipped_and_on_failure_always_jobs_run(
    tmp_path: Path,
) -> None:
    plan = make_plan(
        tmp_path,
        """
        build: {stage: build, script: b}
        test: {stage: test, script: t}
        other: {stage: test, needs: [], script: o}
        deploy: {stage: deploy, script: d}
        notify: {stage: deploy, when: on_failure, script: n}
        cleanup: {stage: .post, when: always, script: c}
        """,
    )
    jobs = FakeJobs({"build": JobEnd(1, 1)})
    result = await run(plan, jobs)
    assert statuses(result) == {
        "build": "failed",
        "test": "skipped",
        "other": "passed",
        "deploy": "skipped",
        "notify": "passed",
        "cleanup": "passed",
    }
    assert result.exit_status == 1


async def test_allowed_failures_keep_the_pipeline_green_and_on_failure_jobs_skipped(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path,
        """
        flaky: {stage: build, script: f, allow_failure: true}
        picky: {stage: build, script: p, allow_failure: {exit_codes: [3]}}
        deploy: {stage: deploy, script: d}
        notify: {stage: deploy, when: on_failure, script: n}
        """,
    )
    result = await run(plan, FakeJobs({"flaky": JobEnd(1, 1), "picky": JobEnd(1, 3)}))
    assert statuses(result) == {
        "flaky": "allowed to fail",
        "picky": "allowed to fail",
        "deploy": "passed",
        "notify": "skipped",
    }
    assert result.exit_status == 0
    result = await run(plan, FakeJobs({"picky": JobEnd(1, 4)}))
    assert statuses(result)["picky"] == "failed" and result.exit_status == 1


async def test_a_manual_job_never_runs_unless_asked(tmp_path: Path) -> None:
    text = (
        "build: {stage: build, script: b}\ndeploy: {stage: deploy, when: manual, script: d}\n"
        "after: {stage: .post, script: a}\n"
    )
    jobs = FakeJobs()
    result = await run(make_plan(tmp_path, text), jobs)
    assert statuses(result) == {"build": "passed", "deploy": "manual", "after": "passed"}
    assert "start deploy" not in jobs.log
    jobs = FakeJobs()
    result = await run(make_plan(tmp_path, text, manual=True), jobs)
    assert statuses(result)["deploy"] == "passed" and "start deploy" in jobs.log


async def test_a_blocking_manual_job_holds_later_stages(tmp_path: Path) -> None:
    text = (
        "gate:\n  stage: build\n  script: g\n  rules:\n    - when: manual\nship: {stage: deploy, script: s}\n"
    )
    result = await run(make_plan(tmp_path, text), FakeJobs())
    assert statuses(result) == {"gate": "manual", "ship": "skipped"}


async def test_a_skipped_need_skips_the_job_that_needs_it(tmp_path: Path) -> None:
    text = "build: {script: b}\nfix: {when: on_failure, script: f}\nafter: {needs: [fix], script: a}\n"
    result = await run(make_plan(tmp_path, text), FakeJobs())
    assert statuses(result) == {"build": "passed", "fix": "skipped", "after": "skipped"}


async def test_a_cancel_stops_jobs_not_started_and_the_pipeline_is_canceled(tmp_path: Path) -> None:
    jobs = FakeJobs({"build": JobEnd(130)}, gated=True)
    cancel = asyncio.Event()
    task = asyncio.create_task(run(make_plan(tmp_path, THREE_STAGES), jobs, cancel=cancel))
    await until(lambda: "start build" in jobs.log)
    cancel.set()
    jobs.gate("build").set()
    jobs.gate("lint").set()
    result = await task
    assert result.exit_status == 130
    assert statuses(result)["deploy"] == "canceled" and "start deploy" not in jobs.log


async def test_every_job_ends_once_in_the_events(tmp_path: Path) -> None:
    jobs = FakeJobs({"build": JobEnd(1, 1)})
    result = await run(make_plan(tmp_path, THREE_STAGES), jobs)
    assert sorted(o.job.name for o in jobs.outcomes) == sorted(o.job.name for o in result.outcomes)
    assert all(o.status is not Status.PASSED or o.duration is not None for o in jobs.outcomes)
