"""What a pipeline looks like on a terminal or in a pipe."""

from __future__ import annotations

from pathlib import Path

from kuberunner.pipeline.output import MAX_PARTIAL_LINE, Console, list_plan, plain
from kuberunner.pipeline.scheduler import Outcome, Status

from .helpers import make_plan

MARKED = (
    b"section_start:1700000000:step_script\r\x1b[0K\x1b[32;1m$ make\x1b[0;m\n"
    b"ok\nsection_end:1700000000:step_script\r\x1b[0K"
)


class Screen:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


def test_plain_output_has_no_markers_and_no_escape_codes() -> None:
    assert plain(MARKED) == b"$ make\nok\n"
    assert plain(b"\x1b]0;title\x07\x1b[1;31mred\x1b[0m \x1b(Bdone") == b"red done"


def test_one_job_unprefixed_and_plain_even_when_a_chunk_cuts_an_escape_code() -> None:
    screen = Screen()
    sink = Console(screen.write, color=False, prefix=False, names=["job"]).sink("job")
    sink.write(MARKED[:20])
    sink.write(MARKED[20:41])
    sink.write(MARKED[41:])
    sink.close()
    assert screen.data == b"$ make\nok\n"


def test_several_jobs_prefix_whole_lines_with_their_names() -> None:
    screen = Screen()
    console = Console(screen.write, color=False, prefix=True, names=["build", "test 1/2"])
    build, test = console.sink("build"), console.sink("test 1/2")
    build.write(b"compil")
    test.write(b"one\ntw")
    build.write(b"ing\n")
    test.write(b"o")
    test.close()
    build.close()
    assert screen.data == b"test 1/2 | one\nbuild    | compiling\ntest 1/2 | two\n"


def test_on_a_terminal_each_job_has_a_colour_and_keeps_its_colours_but_not_markers() -> None:
    screen = Screen()
    console = Console(screen.write, color=True, prefix=True, names=["a", "b"])
    console.sink("a").write(MARKED)
    console.sink("b").write(b"x\n")
    assert screen.data == (
        b"\x1b[36ma\x1b[0m | \x1b[32;1m$ make\x1b[0;m\n\x1b[36ma\x1b[0m | ok\n\x1b[35mb\x1b[0m | x\n"
    )


def test_an_endless_line_is_shown_in_bounded_pieces() -> None:
    screen = Screen()
    sink = Console(screen.write, color=False, prefix=True, names=["j"]).sink("j")
    sink.write(b"x" * (MAX_PARTIAL_LINE + 1))
    assert screen.data == b"j | " + b"x" * (MAX_PARTIAL_LINE + 1) + b"\n"


def test_headers_and_the_summary_table(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path,
        "build: {stage: build, script: b}\ntest: {script: t, allow_failure: true}\n"
        "deploy: {stage: deploy, when: manual, script: d}\n",
    )
    build, test, deploy = plan.jobs
    screen = Screen()
    console = Console(screen.write, color=False, prefix=True, names=[j.name for j in plan.jobs])
    console.header(build)
    outcomes = [
        Outcome(build, Status.PASSED, 0, 100.0, 1.25),
        Outcome(test, Status.ALLOWED, 1, 101.0, 75.0),
        Outcome(deploy, Status.MANUAL),
    ]
    console.ended(outcomes[0])
    console.ended(outcomes[2])
    console.summary(outcomes, 0)
    assert screen.data.decode() == (
        "=== build (stage build) ===\n"
        "=== build: passed in 1.2s ===\n"
        "=== deploy: manual (not run: name it or pass --manual) ===\n"
        "\n"
        "JOB     STAGE   RESULT           DURATION\n"
        "build   build   passed           1.2s\n"
        "test    test    allowed to fail  1m15s\n"
        "deploy  deploy  manual           -\n"
        "Pipeline passed\n"
    )


def test_list_shows_stage_job_when_and_needs(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path,
        "build: {stage: build, script: b}\ntest: {needs: [build], script: t}\n"
        "deploy: {stage: deploy, when: manual, script: d}\nnever:\n  script: n\n  rules: [{when: never}]\n",
    )
    assert list_plan(plan) == (
        "STAGE   JOB     WHEN                      NEEDS\n"
        "build   build   on_success                (stage)\n"
        "test    test    on_success                build\n"
        "deploy  deploy  manual (allowed to fail)  (stage)\n"
        "not in the pipeline (rules, only/except): never\n"
    )
