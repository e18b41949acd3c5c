"""Reading .gitlab-ci.yml as GitLab does: the jobs a user gets, the warnings they see, the one-line errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kuberunner.errors import BadInput, JobFileError
from kuberunner.job import keywords
from kuberunner.job.gitlab_ci import load_pipeline, parse_pipeline, select_jobs
from kuberunner.job.spec import JobSpec, Pipeline

CI = Path(".gitlab-ci.yml")


def parse(text: str) -> Pipeline:
    return parse_pipeline(textwrap.dedent(text), CI)


def only_job(text: str) -> JobSpec:
    pipeline = parse(text)
    assert len(pipeline.jobs) == 1
    return pipeline.jobs[0]


# --- script, before_script, after_script ----------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        pytest.param("script: echo hi", ("echo hi",), id="string"),
        pytest.param("script: [echo a, echo b]", ("echo a", "echo b"), id="list"),
        pytest.param(
            "script: [echo a, [echo b, [echo c]]]", ("echo a", "echo b", "echo c"), id="nested-lists"
        ),
        pytest.param(
            "script:\n    - |\n      echo one\n      echo two", ("echo one\necho two\n",), id="multi-line"
        ),
        pytest.param("script:\n    - >-\n      echo\n      folded", ("echo folded",), id="folded"),
        pytest.param("script: ['echo \"$VAR\" # not a comment']", ('echo "$VAR" # not a comment',), id="raw"),
    ],
)
def test_script_forms(yaml: str, expected: tuple[str, ...]) -> None:
    job = only_job(f"build:\n  {yaml}\n")
    assert job.script == expected


@pytest.mark.parametrize("key", ["before_script", "after_script"])
def test_before_and_after_script(key: str) -> None:
    job = only_job(f"build:\n  {key}: [one, [two]]\n  script: main\n")
    assert getattr(job, key) == ("one", "two")
    assert job.script == ("main",)


def test_reference_tags_are_resolved_and_flattened() -> None:
    job = only_job(
        """
        .setup:
          script: [echo setup-1, echo setup-2]
          variables: {A: "1"}
        build:
          variables: !reference [.setup, variables]
          script:
            - !reference [.setup, script]
            - echo main
        """
    )
    assert job.script == ("echo setup-1", "echo setup-2", "echo main")
    assert job.variables == (("A", "1"),)


def test_a_reference_can_pick_one_item_of_a_list_by_index() -> None:
    job = only_job(
        """
        .setup:
          script: [echo first, echo second, echo third]
        build:
          script:
            - !reference [.setup, script, 1]
            - !reference [.setup, script, -1]
        """
    )
    assert job.script == ("echo second", "echo third")


def test_a_reference_index_past_the_list_is_not_found() -> None:
    with pytest.raises(JobFileError, match=r"!reference \[\.s, script, 5\] could not be found"):
        parse(".s:\n  script: [a]\nbuild:\n  script: [!reference [.s, script, 5]]\n")


# --- image ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml", "image", "warnings"),
    [
        pytest.param("image: alpine:3.19", "alpine:3.19", (), id="string"),
        pytest.param("image: {name: 'busybox'}", "busybox", (), id="name-mapping"),
        pytest.param(
            "image: {name: ruby, entrypoint: ['']}",
            "ruby",
            ("job 'build': keyword 'image:entrypoint' is not supported yet and is ignored",),
            id="entrypoint-warns",
        ),
        pytest.param(
            "image: {name: ruby, pul_policy: always}",
            "ruby",
            ("job 'build': unknown keyword 'image:pul_policy' is ignored",),
            id="unknown-image-key-warns",
        ),
    ],
)
def test_image(yaml: str, image: str, warnings: tuple[str, ...]) -> None:
    job = only_job(f"build:\n  {yaml}\n  script: x\n")
    assert job.image == image
    assert job.warnings == warnings


# --- variables -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_value", "text"),
    [
        pytest.param("plain", "plain", id="string"),
        pytest.param("42", "42", id="integer"),
        pytest.param("1.5", "1.5", id="float"),
        pytest.param("true", "true", id="boolean"),
        pytest.param("'007'", "007", id="quoted-number"),
        pytest.param("", "", id="null"),
        pytest.param("$OTHER/bin", "$OTHER/bin", id="kept-raw"),
        pytest.param("{value: v, description: shown in the UI}", "v", id="value-mapping"),
    ],
)
def test_variable_values_become_strings(yaml_value: str, text: str) -> None:
    job = only_job(f"build:\n  variables:\n    V: {yaml_value}\n  script: x\n")
    assert job.variables == (("V", text),)


def test_global_variables_come_first_then_the_jobs_own() -> None:
    job = only_job(
        """
        variables: {A: global-a, B: global-b}
        build:
          variables: {B: job-b, C: job-c}
          script: x
        """
    )
    assert job.variables == (("A", "global-a"), ("B", "global-b"), ("B", "job-b"), ("C", "job-c"))


@pytest.mark.parametrize(
    ("inherit", "expected"),
    [
        pytest.param("false", (("OWN", "o"),), id="none"),
        pytest.param("true", (("A", "a"), ("B", "b"), ("OWN", "o")), id="all"),
        pytest.param("[B]", (("B", "b"), ("OWN", "o")), id="some"),
    ],
)
def test_inherit_variables(inherit: str, expected: tuple[tuple[str, str], ...]) -> None:
    job = only_job(
        f"""
        variables: {{A: a, B: b}}
        build:
          inherit: {{variables: {inherit}}}
          variables: {{OWN: o}}
          script: x
        """
    )
    assert job.variables == expected


def test_expand_false_warns_that_values_are_still_expanded() -> None:
    job = only_job("build:\n  variables:\n    V: {value: $X, expand: false}\n  script: x\n")
    assert job.variables == (("V", "$X"),)
    assert job.warnings == (
        "job 'build': variable 'V': keyword 'expand: false' is not supported yet and is ignored",
    )


# --- timeout -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_value", "seconds"),
    [
        pytest.param("1h 30m", 5400, id="hours-minutes"),
        pytest.param("90 minutes", 5400, id="minutes"),
        pytest.param("3 hours 20 minutes", 12000, id="words"),
        pytest.param("10m 30s", 630, id="minutes-seconds"),
        pytest.param("1 day", 86400, id="day"),
        pytest.param("3600", 3600, id="integer"),
        pytest.param("'45'", 45, id="quoted-seconds"),
    ],
)
def test_timeout(yaml_value: str, seconds: int) -> None:
    assert only_job(f"build:\n  timeout: {yaml_value}\n  script: x\n").timeout_seconds == seconds


def test_no_timeout_means_the_runners_default() -> None:
    assert only_job("build:\n  script: x\n").timeout_seconds is None


# --- default and the deprecated globals ----------------------------------------------------------

DEFAULTS = """
default:
  image: alpine
  before_script: [echo before]
  after_script: [echo after]
  timeout: 2h
"""


def test_default_fills_what_a_job_leaves_out() -> None:
    job = only_job(DEFAULTS + "build:\n  script: x\n")
    assert (job.image, job.before_script, job.after_script, job.timeout_seconds) == (
        "alpine",
        ("echo before",),
        ("echo after",),
        7200,
    )


def test_a_jobs_own_keywords_win_over_default() -> None:
    job = only_job(
        DEFAULTS
        + "build:\n  image: debian\n  before_script: []\n  after_script: [own]\n  timeout: 5m\n  script: x\n"
    )
    assert (job.image, job.before_script, job.after_script, job.timeout_seconds) == (
        "debian",
        (),
        ("own",),
        300,
    )


@pytest.mark.parametrize(
    ("inherit", "image", "before"),
    [
        pytest.param("false", None, (), id="none"),
        pytest.param("[image]", "alpine", (), id="some"),
        pytest.param("true", "alpine", ("echo before",), id="all"),
    ],
)
def test_inherit_default(inherit: str, image: str | None, before: tuple[str, ...]) -> None:
    job = only_job(DEFAULTS + f"build:\n  inherit:\n    default: {inherit}\n  script: x\n")
    assert (job.image, job.before_script) == (image, before)


def test_top_level_image_and_scripts_act_as_defaults() -> None:
    job = only_job("image: ruby:3\nbefore_script: [b]\nafter_script: a\nbuild:\n  script: x\n")
    assert (job.image, job.before_script, job.after_script) == ("ruby:3", ("b",), ("a",))


def test_default_wins_over_deprecated_globals() -> None:
    assert only_job("image: old\ndefault: {image: new}\nbuild:\n  script: x\n").image == "new"


TRANSFER_DEFAULTS = """
default:
  artifacts: {paths: [out/], when: always}
  cache: {key: deps, paths: [.deps/]}
  services: [postgres:16]
"""


def transfer_summary(job: JobSpec) -> tuple[object, ...]:
    transfers = job.transfers
    if transfers is None:
        return (None, (), ())
    artifacts = transfers.artifacts.paths if transfers.artifacts is not None else None
    return (artifacts, tuple(c.key for c in transfers.caches), tuple(s.name for s in transfers.services))


def test_default_artifacts_cache_and_services_reach_jobs_without_their_own() -> None:
    job = only_job(TRANSFER_DEFAULTS + "build:\n  script: x\n")
    assert transfer_summary(job) == (("out/",), ("deps",), ("postgres:16",))
    assert job.transfers is not None and job.transfers.artifacts is not None
    assert job.transfers.artifacts.when == "always"


def test_a_jobs_own_cache_replaces_the_default_whole() -> None:
    job = only_job(TRANSFER_DEFAULTS + "build:\n  cache: {paths: [vendor/]}\n  services: []\n  script: x\n")
    # Not merged with the default's key: the job's cache is `default`-keyed, its services none.
    assert transfer_summary(job) == (("out/",), ("default",), ())


@pytest.mark.parametrize(
    ("inherit", "expected"),
    [
        pytest.param("false", (None, (), ()), id="none"),
        pytest.param("[cache, image]", (None, ("deps",), ()), id="some"),
        pytest.param("true", (("out/",), ("deps",), ("postgres:16",)), id="all"),
    ],
)
def test_inherit_default_picks_artifacts_cache_and_services(
    inherit: str, expected: tuple[object, ...]
) -> None:
    job = only_job(TRANSFER_DEFAULTS + f"build:\n  inherit:\n    default: {inherit}\n  script: x\n")
    assert transfer_summary(job) == expected


def test_top_level_cache_and_services_act_as_defaults_and_default_wins() -> None:
    job = only_job("cache: {key: old, paths: [a/]}\nservices: [redis]\nbuild:\n  script: x\n")
    assert transfer_summary(job) == (None, ("old",), ("redis",))
    assert job.warnings == () and parse("services: [redis]\nbuild:\n  script: x\n").warnings == ()
    job = only_job("cache: {key: old}\ndefault:\n  cache: {key: new}\nbuild:\n  script: x\n")
    assert transfer_summary(job) == (None, ("new",), ())


def test_a_malformed_default_cache_is_refused_at_its_line() -> None:
    with pytest.raises(JobFileError) as caught:
        parse("default:\n  cache: [3]\nbuild:\n  script: x\n")
    assert str(caught.value).endswith(
        ":2: default: 'cache' must be a mapping or a list of mappings, not an integer"
    )


@pytest.mark.parametrize("keyword", sorted(keywords.DEFAULT_IGNORED))
def test_unsupported_default_keywords_warn_once(keyword: str) -> None:
    pipeline = parse(f"default:\n  {keyword}: x\nbuild:\n  script: x\nother:\n  script: y\n")
    assert pipeline.warnings == (f"default: keyword {keyword!r} is not supported yet and is ignored",)


def test_variables_in_default_warn_as_gitlab_rejects_them() -> None:
    pipeline = parse("default:\n  variables: {A: b}\nbuild:\n  script: x\n")
    assert pipeline.jobs[0].variables == ()
    assert pipeline.warnings == (
        "default: keyword 'variables' is not allowed here and is ignored (use top-level 'variables')",
    )


# --- extends -------------------------------------------------------------------------------------


def test_extends_with_several_parents_merges_in_order() -> None:
    job = only_job(
        """
        .base:
          image: base-image
          variables: {A: base, B: base, C: base}
          before_script: [base-before]
          script: [base-script]
        .middle:
          variables: {B: middle}
          script: [middle-script]
        build:
          extends: [.base, .middle]
          variables: {C: own}
        """
    )
    assert job.image == "base-image"
    assert job.variables == (("A", "base"), ("B", "middle"), ("C", "own"))
    assert job.before_script == ("base-before",)
    assert job.script == ("middle-script",)  # lists are replaced, not merged


def test_nested_extends() -> None:
    job = only_job(
        """
        .a: {script: [from-a], variables: {A: a}}
        .b: {extends: .a, variables: {B: b}}
        .c: {extends: .b, after_script: [from-c]}
        build: {extends: .c}
        """
    )
    assert (job.script, job.variables, job.after_script) == (
        ("from-a",),
        (("A", "a"), ("B", "b")),
        ("from-c",),
    )


def test_a_visible_job_can_be_extended() -> None:
    pipeline = parse("first:\n  script: one\n  image: img\nsecond:\n  extends: first\n  script: two\n")
    assert [(j.name, j.script, j.image) for j in pipeline.jobs] == [
        ("first", ("one",), "img"),
        ("second", ("two",), "img"),
    ]


def test_yaml_anchors_and_merge_keys() -> None:
    job = only_job(
        """
        .common: &common
          image: alpine
          script: [echo common]
        build:
          <<: *common
          timeout: 1m
        """
    )
    assert (job.image, job.script, job.timeout_seconds) == ("alpine", ("echo common",), 60)


# --- hidden jobs and job order -------------------------------------------------------------------


def test_hidden_jobs_are_not_run_and_need_no_script() -> None:
    pipeline = parse(".template:\n  image: x\nb-job:\n  script: b\na-job:\n  script: a\n")
    assert [j.name for j in pipeline.jobs] == ["b-job", "a-job"]
    assert pipeline.job("a-job") is not None
    assert pipeline.job(".template") is None


# --- keywords we accept but do not act on --------------------------------------------------------


@pytest.mark.parametrize("keyword", sorted(keywords.JOB_IGNORED))
def test_unsupported_job_keyword_warns_naming_job_and_keyword(keyword: str) -> None:
    job = only_job(f"build:\n  script: x\n  {keyword}: something\n")
    assert job.warnings == (f"job 'build': keyword {keyword!r} is not supported yet and is ignored",)


@pytest.mark.parametrize("keyword", sorted(keywords.TOP_LEVEL_IGNORED))
def test_unsupported_top_level_keyword_warns(keyword: str) -> None:
    pipeline = parse(f"{keyword}: something\nbuild:\n  script: x\n")
    assert [j.name for j in pipeline.jobs] == ["build"]
    assert pipeline.warnings == (f"keyword {keyword!r} is not supported yet and is ignored",)


def test_a_keyword_inherited_through_extends_warns_on_the_job() -> None:
    job = only_job(".base:\n  tags: [k8s]\nbuild:\n  extends: .base\n  script: x\n")
    assert job.warnings == ("job 'build': keyword 'tags' is not supported yet and is ignored",)


def test_an_unknown_job_keyword_is_an_error_in_gitlabs_words() -> None:
    with pytest.raises(JobFileError) as caught:
        parse("build:\n  script: x\n  befor_script: y\n  foo: 1\n")
    assert str(caught.value) == ".gitlab-ci.yml:3: jobs:build config contains unknown keys: befor_script, foo"


def test_an_unknown_default_keyword_is_an_error() -> None:
    with pytest.raises(JobFileError) as caught:
        parse("default:\n  imgae: x\nbuild:\n  script: x\n")
    assert str(caught.value) == ".gitlab-ci.yml:2: default config contains unknown keys: imgae"


@pytest.mark.parametrize("keyword", sorted(keywords.PIPELINE_ACTED_ON))
def test_pipeline_keywords_are_known_and_leave_the_job_without_warnings(keyword: str) -> None:
    job = only_job(f"build:\n  script: x\n  {keyword}: something\n")
    assert job.warnings == ()


@pytest.mark.parametrize("keyword", ["trigger", "run"])
def test_jobs_without_script_that_we_cannot_run_are_skipped_with_a_warning(keyword: str) -> None:
    pipeline = parse(f"deploy:\n  {keyword}: x\nbuild:\n  script: x\n")
    assert [j.name for j in pipeline.jobs] == ["build"]
    assert pipeline.warnings == (
        f"job 'deploy': keyword {keyword!r} is not supported yet; the job is skipped",
    )


def test_spec_header_document_is_ignored_with_a_warning() -> None:
    pipeline = parse("spec:\n  inputs: {}\n---\nbuild:\n  script: x\n")
    assert [j.name for j in pipeline.jobs] == ["build"]
    assert pipeline.warnings == ("keyword 'spec' is not supported yet and is ignored",)


# --- errors: one line, FILE:LINE -----------------------------------------------------------------

ERRORS = [
    (
        "script-integer",
        "build:\n  script: 42\n",
        "2: job 'build': 'script' must be a string or a list of strings, not an integer",
    ),
    (
        "script-item-integer",
        "build:\n  script:\n    - echo\n    - 42\n",
        "4: job 'build': 'script' must be a string or a list of strings, not a list holding an integer",
    ),
    ("script-empty", "build:\n  script: []\n", "2: job 'build': 'script' must not be empty"),
    (
        "script-null",
        "build:\n  script:\n",
        "2: job 'build': 'script' must be a string or a list of strings, not null",
    ),
    (
        "script-too-nested",
        "build:\n  script: " + "[" * 12 + "x" + "]" * 12 + "\n",
        "2: job 'build': 'script' nests lists more than 10 levels deep",
    ),
    (
        "no-script",
        "x: {script: y}\nbuild:\n  image: alpine\n",
        "2: job 'build' has no 'script' (every job needs one, unless it uses 'trigger')",
    ),
    ("job-not-mapping", "build: echo hi\n", "1: job 'build' must be a mapping of keywords, not a string"),
    (
        "yaml-unclosed",
        "build:\n  script: [echo\n",
        "2: invalid YAML: expected ',' or ']', but got '<stream end>'",
    ),
    (
        "yaml-mapping-in-value",
        "build:\n  script: a: b\n",
        "2: invalid YAML: mapping values are not allowed here",
    ),
    (
        "yaml-duplicate-key",
        "build:\n  script: a\n  script: b\n",
        '3: invalid YAML: found duplicate key "script" with value "b" (original value: "a")',
    ),
    (
        "yaml-tab",
        "build:\n\tscript: x\n",
        "2: invalid YAML: found character '\\t' that cannot start any token",
    ),
    ("yaml-unknown-tag", "build:\n  script: !foo bar\n", "2: unknown YAML tag '!foo'"),
    ("yaml-null-key", "build:\n  ~: x\n  script: x\n", "2: keys must be strings, not null"),
    ("empty-file", "", " is empty; it must define at least one job"),
    ("comments-only", "# nothing yet\n", " is empty; it must define at least one job"),
    ("root-is-list", "- a\n- b\n", "1: must be a mapping of job names to jobs, not a list"),
    (
        "only-hidden-jobs",
        ".a:\n  script: x\n",
        " defines no visible jobs (names starting with '.' are hidden)",
    ),
    (
        "two-documents",
        "a: {script: x}\n---\nb: {script: y}\n",
        "3: holds more than one YAML document; only a 'spec:' header may come before the jobs",
    ),
    (
        "extends-missing",
        "build:\n  extends: .nope\n  script: x\n",
        "2: job 'build': 'extends' names '.nope', which does not exist",
    ),
    (
        "extends-missing-in-list",
        "build:\n  extends:\n    - .a\n    - .nope\n  script: x\n.a: {}\n",
        "4: job 'build': 'extends' names '.nope', which does not exist",
    ),
    (
        "extends-cycle",
        ".a:\n  extends: .b\n.b:\n  extends: .a\nbuild:\n  extends: .a\n  script: x\n",
        "4: job '.b': circular 'extends': .a -> .b -> .a",
    ),
    (
        "extends-self",
        "build:\n  extends: build\n  script: x\n",
        "2: job 'build': circular 'extends': build -> build",
    ),
    (
        "extends-integer",
        "build:\n  extends: 3\n  script: x\n",
        "2: job 'build': 'extends' must be a job name or a list of job names, not an integer",
    ),
    (
        "extends-not-a-job",
        ".a: hello\nbuild:\n  extends: .a\n  script: x\n",
        "3: job 'build': cannot extend '.a': it is a string, not a job",
    ),
    (
        "reference-missing",
        "build:\n  script: [!reference [.x, script]]\n",
        "2: !reference [.x, script] could not be found",
    ),
    (
        "reference-cycle",
        ".a:\n  script: [!reference [.b, script]]\n"
        ".b:\n  script: [!reference [.a, script]]\n"
        "build:\n  script: x\n",
        "2: !reference [.b, script] is circular",
    ),
    (
        "image-integer",
        "build:\n  image: 3\n  script: x\n",
        "2: job 'build': 'image' must be an image name, not an integer",
    ),
    (
        "image-without-name",
        "build:\n  image: {entrypoint: ['']}\n  script: x\n",
        "2: job 'build': 'image' needs a 'name'",
    ),
    ("image-empty", "build:\n  image: ''\n  script: x\n", "2: job 'build': 'image' must not be empty"),
    (
        "variables-list",
        "variables: [a]\nbuild:\n  script: x\n",
        "1: 'variables' must be a mapping of names to values, not a list",
    ),
    (
        "variable-value-list",
        "build:\n  variables:\n    A: [1]\n  script: x\n",
        "3: job 'build': variable 'A' must be a string, a number or a boolean, not a list",
    ),
    (
        "timeout-unknown-unit",
        "build:\n  timeout: 1 fortnight\n  script: x\n",
        "2: job 'build': 'timeout': '1 fortnight' is not a duration: unknown unit 'fortnight'",
    ),
    (
        "timeout-list",
        "build:\n  timeout: [1]\n  script: x\n",
        "2: job 'build': 'timeout' must be a duration like '1h 30m', not a list",
    ),
    ("timeout-zero", "build:\n  timeout: 0\n  script: x\n", "2: job 'build': 'timeout' must be positive"),
    (
        "default-list",
        "default: [a]\nbuild:\n  script: x\n",
        "1: 'default' must be a mapping of keywords, not a list",
    ),
    (
        "default-before-script-integer",
        "default:\n  before_script: 1\nbuild:\n  script: x\n",
        "2: default: 'before_script' must be a string or a list of strings, not an integer",
    ),
    (
        "inherit-integer",
        "build:\n  inherit: {default: 3}\n  script: x\n",
        "2: job 'build': 'inherit:default' must be true, false or a list of names, not an integer",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in ERRORS])
def test_error_is_one_line_naming_file_and_line(text: str, expected: str) -> None:
    with pytest.raises(JobFileError) as caught:
        parse_pipeline(text, CI)
    message = str(caught.value)
    # `expected` starts with the line number, or with " " where the problem has no line.
    assert message == f".gitlab-ci.yml:{expected}"
    assert "\n" not in message
    assert isinstance(caught.value, BadInput)


def test_error_line_of_a_key_brought_in_by_a_merge_key() -> None:
    text = ".common: &common\n  image: 3\nbuild:\n  <<: *common\n  script: x\n"
    with pytest.raises(
        JobFileError, match=r"^\.gitlab-ci\.yml:2: job 'build': 'image' must be an image name"
    ):
        parse_pipeline(text, CI)


def test_error_line_inside_an_extended_parent_points_at_the_parent() -> None:
    text = ".base:\n  timeout: soon\nbuild:\n  extends: .base\n  script: x\n"
    with pytest.raises(
        JobFileError, match=r"^\.gitlab-ci\.yml:2: job 'build': 'timeout': 'soon' is not a duration"
    ):
        parse_pipeline(text, CI)


def test_an_alias_bomb_is_refused_quickly() -> None:
    # Nine levels of nine aliases each would flatten to 9**8 (43 million) script lines.
    lines = [".a0: &a0 [echo]"]
    lines += [f".a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    text = "\n".join(lines) + "\nbuild:\n  script: *a8\n"
    with pytest.raises(
        JobFileError, match=r"^\.gitlab-ci\.yml:\d+: job 'build': 'script' has more than 100000 lines$"
    ):
        parse_pipeline(text, CI)


# --- load_pipeline: the file itself --------------------------------------------------------------


def test_load_pipeline_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text("build:\n  script: echo hi\n", encoding="utf-8")
    pipeline = load_pipeline(path)
    assert pipeline.path == path
    assert pipeline.jobs[0].script == ("echo hi",)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        pytest.param(lambda p: None, "{p}: no such file", id="missing"),
        pytest.param(lambda p: p.mkdir(), "{p}: is a directory, not a file", id="directory"),
        pytest.param(
            lambda p: p.write_bytes(b"build:\n  script: \xff\n"), "{p}:2: is not valid UTF-8", id="not-utf8"
        ),
    ],
)
def test_load_pipeline_file_problems(tmp_path: Path, setup: object, expected: str) -> None:
    path = tmp_path / "ci.yml"
    setup(path)  # type: ignore[operator]
    with pytest.raises(JobFileError) as caught:
        load_pipeline(path)
    assert str(caught.value) == expected.format(p=path)


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ci.yml"
    path.write_bytes(b"\xef\xbb\xbfbuild:\n  script: x\n")
    assert load_pipeline(path).jobs[0].name == "build"


def test_a_typical_gitlab_file_runs_with_warnings_only() -> None:
    pipeline = parse(
        """
        stages: [build, test]
        workflow:
          rules:
            - if: $CI_COMMIT_BRANCH
        variables:
          GIT_DEPTH: 10
        default:
          image: python:3.12
          before_script:
            - pip install -e .
        .cache: &cache
          cache: {key: pip, paths: [.cache/pip]}
        build:
          <<: *cache
          stage: build
          script: [python -m build]
          artifacts: {paths: [dist/]}
        test:
          stage: test
          needs: [build]
          script:
            - pytest
          rules:
            - when: always
        """
    )
    assert [(j.name, j.image, j.before_script, j.variables) for j in pipeline.jobs] == [
        ("build", "python:3.12", ("pip install -e .",), (("GIT_DEPTH", "10"),)),
        ("test", "python:3.12", ("pip install -e .",), (("GIT_DEPTH", "10"),)),
    ]
    # stages, workflow, needs and rules belong to the pipeline (kuberunner.pipeline): no warning here.
    assert pipeline.warnings == ()
    # artifacts and cache are read for exec (issue 13): no warning either.
    assert pipeline.jobs[0].warnings == ()
    transfers = pipeline.jobs[0].transfers
    assert transfers is not None and transfers.artifacts is not None
    assert (transfers.artifacts.paths, [c.key for c in transfers.caches]) == (("dist/",), ["pip"])


def test_a_message_with_a_newline_still_renders_as_one_line() -> None:
    assert str(JobFileError(Path("ci.yml"), 3, "first\nsecond")) == "ci.yml:3: first second"
    assert str(JobFileError(Path("ci.yml"), 0, "no such file")) == "ci.yml: no such file"


SELECTABLE = ".tmpl:\n  script: t\nbuild:\n  script: b\ntest:\n  script: t\ndeploy:\n  trigger: x\n"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param((), ["build", "test"], id="all-in-file-order"),
        pytest.param(("test", "build"), ["test", "build"], id="named-in-given-order"),
    ],
)
def test_select_jobs(names: tuple[str, ...], expected: list[str]) -> None:
    assert [j.name for j in select_jobs(parse(SELECTABLE), names)] == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("tset", ".gitlab-ci.yml: no job named 'tset' (jobs: build, test)", id="typo"),
        pytest.param(
            ".tmpl",
            ".gitlab-ci.yml: no job named '.tmpl', as names starting with '.' are hidden (jobs: build, test)",
            id="hidden",
        ),
        pytest.param(
            "deploy", ".gitlab-ci.yml: no job named 'deploy' (jobs: build, test)", id="skipped-trigger"
        ),
    ],
)
def test_selecting_an_unknown_job_is_bad_input(name: str, message: str) -> None:
    with pytest.raises(JobFileError) as caught:
        select_jobs(parse(SELECTABLE), ["build", name])
    assert str(caught.value) == message


# --- image:pull_policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml", "policies"),
    [
        pytest.param("image: ruby", (), id="none"),
        pytest.param("image: {name: ruby, pull_policy: never}", ("Never",), id="one"),
        pytest.param(
            "image: {name: ruby, pull_policy: [if-not-present, always, if-not-present]}",
            ("IfNotPresent", "Always"),
            id="list-in-order-once-each",
        ),
    ],
)
def test_image_pull_policy_is_read_without_a_warning(yaml: str, policies: tuple[str, ...]) -> None:
    job = only_job(f"build:\n  {yaml}\n  script: [x]\n")
    assert (job.image_pull_policy, job.warnings) == (policies, ())


def test_image_pull_policy_comes_with_the_default_image_and_only_with_it() -> None:
    pipeline = parse(
        "default:\n  image: {name: ruby, pull_policy: never}\n"
        "a:\n  script: [x]\n"
        "b:\n  image: alpine\n  script: [x]\n"
        "c:\n  inherit: {default: false}\n  script: [x]\n"
    )
    assert [(j.image, j.image_pull_policy) for j in pipeline.jobs] == [
        ("ruby", ("Never",)),
        ("alpine", ()),
        (None, ()),
    ]


@pytest.mark.parametrize(
    ("value", "line_and_message"),
    [
        ("sometimes", r":2: job 'build': 'image:pull_policy' must be always, if-not-present or never"),
        ("[always, 3]", r":2: job 'build': 'image:pull_policy' must be always, .* not an integer"),
        ("[]", r":2: job 'build': 'image:pull_policy' must not be empty"),
        ("Always", r"must be always, if-not-present or never"),
    ],
)
def test_a_bad_image_pull_policy_names_its_line(value: str, line_and_message: str) -> None:
    with pytest.raises(JobFileError, match=line_and_message):
        parse(f"build:\n  image: {{name: ruby, pull_policy: {value}}}\n  script: [x]\n")
