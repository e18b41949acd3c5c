"""Read and check the pipeline keywords of one job (stage, when, allow_failure, needs, dependencies,
parallel, start_in), with GitLab's own error messages, e.g. `test job: chosen stage does not exist;
available stages are .pre, build, test, deploy, .post`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kuberunner.errors import JobFileError
from kuberunner.job.durations import parse_duration
from kuberunner.job.yaml_nodes import Entry, Map, Scalar, Seq, describe
from kuberunner.pipeline.plan.rules import scalar_string

MAX_PARALLEL = 200
"""GitLab's limit on `parallel:` and on the jobs a `parallel: matrix:` makes."""
NEED_KEYS = frozenset({"job", "artifacts", "optional", "parallel", "pipeline", "project", "ref"})
JOB_WHEN = ("on_success", "on_failure", "always", "manual", "delayed", "never")


@dataclass(frozen=True, slots=True)
class NeedRef:
    job: str
    line: int
    optional: bool = False
    artifacts: bool = True
    matrix: tuple[tuple[tuple[str, str], ...], ...] | None = None
    """`needs: - job: x, parallel: matrix: [...]`: only the nodes with these variables."""


@dataclass(frozen=True, slots=True)
class JobKeywords:
    stage: str
    stage_line: int
    when: str | None
    allow_failure: bool | None
    exit_codes: frozenset[int]
    needs: tuple[NeedRef, ...] | None
    dependencies: tuple[tuple[str, int], ...] | None
    nodes: tuple[tuple[tuple[str, str], ...], ...] | None
    """`parallel`: the variables of each node (CI_NODE_* added later); None: not parallel."""
    matrix: bool
    start_in: int
    line: int


def read(name: str, job: Map, path: Path, stages: tuple[str, ...]) -> JobKeywords:
    stage_entry = job.get("stage")
    stage, stage_line = "test", job.line
    if stage_entry is not None:
        if not (isinstance(stage_entry.value, Scalar) and isinstance(stage_entry.value.value, str)):
            raise JobFileError(path, stage_entry.key_line, f"jobs:{name} stage should be a string")
        stage, stage_line = stage_entry.value.value, stage_entry.key_line
    if stage not in stages:
        raise JobFileError(
            path,
            stage_line,
            f"{name} job: chosen stage does not exist; available stages are {', '.join(stages)}",
        )
    when = _when(name, job, path)
    rules = job.get("rules")
    if rules is not None:
        clashing = [k for k in ("when", "start_in", "only", "except") if job.get(k) is not None]
        if clashing:
            raise JobFileError(
                path, rules.key_line, f"jobs:{name} may not be used with `rules`: {', '.join(clashing)}"
            )
    allow, codes = _allow_failure(name, job, path)
    start_in = 0
    start_entry = job.get("start_in")
    if start_entry is not None:
        start_in = duration(start_entry, f"jobs:{name} start in", path)
    if when == "delayed" and start_entry is None:
        raise JobFileError(path, job.line, f"jobs:{name} start in should be specified for delayed job")
    nodes, matrix = _parallel(name, job, path)
    return JobKeywords(
        stage=stage,
        stage_line=stage_line,
        when=when,
        allow_failure=allow,
        exit_codes=codes,
        needs=_needs(name, job, path),
        dependencies=_dependencies(name, job, path),
        nodes=nodes,
        matrix=matrix,
        start_in=start_in,
        line=job.line,
    )


def stages_of(root: Map, path: Path) -> tuple[str, ...]:
    entry = root.get("stages") or root.get("types")
    if entry is None:
        return ("build", "test", "deploy")
    items = entry.value.items if isinstance(entry.value, Seq) else None
    if items is None or not all(isinstance(i, Scalar) and isinstance(i.value, str) for i in items):
        raise JobFileError(path, entry.key_line, "stages config should be an array of strings")
    names = [str(i.value) for i in items if isinstance(i, Scalar)]
    return tuple(dict.fromkeys(n for n in names if n not in (".pre", ".post")))


def duration(entry: Entry, where: str, path: Path) -> int:
    value = entry.value
    if isinstance(value, Scalar) and isinstance(value.value, int | str) and not isinstance(value.value, bool):
        try:
            return parse_duration(str(value.value))
        except ValueError:
            pass
    raise JobFileError(path, entry.key_line, f"{where} should be a duration")


def _when(name: str, job: Map, path: Path) -> str | None:
    entry = job.get("when")
    if entry is None:
        return None
    value = entry.value
    if not (isinstance(value, Scalar) and isinstance(value.value, str) and value.value in JOB_WHEN):
        raise JobFileError(path, entry.key_line, f"jobs:{name} when should be one of: {', '.join(JOB_WHEN)}")
    return value.value


def _allow_failure(name: str, job: Map, path: Path) -> tuple[bool | None, frozenset[int]]:
    entry = job.get("allow_failure")
    if entry is None:
        return None, frozenset()
    value = entry.value
    if isinstance(value, Scalar) and isinstance(value.value, bool):
        return value.value, frozenset()
    if isinstance(value, Map) and value.keys() == ("exit_codes",):
        codes = value.entries[0].value
        items = codes.items if isinstance(codes, Seq) else (codes,)
        found = set()
        for item in items:
            if not (
                isinstance(item, Scalar) and isinstance(item.value, int) and not isinstance(item.value, bool)
            ):
                raise JobFileError(
                    path,
                    entry.key_line,
                    f"jobs:{name}:allow_failure exit code should be an array of integers or an integer",
                )
            found.add(item.value)
        return True, frozenset(found)
    raise JobFileError(path, entry.key_line, f"jobs:{name} allow_failure should be a hash or a boolean value")


def _needs(name: str, job: Map, path: Path) -> tuple[NeedRef, ...] | None:
    entry = job.get("needs")
    if entry is None:
        return None
    if not isinstance(entry.value, Seq):
        raise JobFileError(path, entry.key_line, f"jobs:{name}:needs config can only be a hash or an array")
    found = []
    for item in entry.value.items:
        if isinstance(item, Scalar) and isinstance(item.value, str):
            found.append(NeedRef(item.value, item.line))
            continue
        if not isinstance(item, Map):
            raise JobFileError(path, item.line, f"jobs:{name}:needs:need has an unsupported type")
        unknown = [e.key for e in item if e.key not in NEED_KEYS]
        if unknown:
            raise JobFileError(
                path, item.line, f"jobs:{name}:needs:need config contains unknown keys: {', '.join(unknown)}"
            )
        if item.get("pipeline") is not None or item.get("project") is not None:
            raise JobFileError(
                path,
                item.line,
                f"jobs:{name}:needs: needs on other pipelines or projects need a GitLab server",
            )
        job_entry = item.get("job")
        if job_entry is None or not (
            isinstance(job_entry.value, Scalar) and isinstance(job_entry.value.value, str)
        ):
            raise JobFileError(path, item.line, f"jobs:{name}:needs:need job should be a string")
        found.append(
            NeedRef(
                job_entry.value.value,
                item.line,
                optional=_flag(item, "optional", False, name, path),
                artifacts=_flag(item, "artifacts", True, name, path),
                matrix=_need_matrix(item, name, path),
            )
        )
    return tuple(found)


def _flag(item: Map, key: str, default: bool, name: str, path: Path) -> bool:
    entry = item.get(key)
    if entry is None:
        return default
    if not (isinstance(entry.value, Scalar) and isinstance(entry.value.value, bool)):
        raise JobFileError(path, entry.key_line, f"jobs:{name}:needs:need {key} should be a boolean value")
    return entry.value.value


def _need_matrix(item: Map, name: str, path: Path) -> tuple[tuple[tuple[str, str], ...], ...] | None:
    entry = item.get("parallel")
    if entry is None:
        return None
    nodes, matrix = _parallel(name, Map((entry,), item.line), path)
    if not matrix or nodes is None:
        raise JobFileError(path, entry.key_line, f"jobs:{name}:needs:need parallel should be a matrix")
    return nodes


def _dependencies(name: str, job: Map, path: Path) -> tuple[tuple[str, int], ...] | None:
    entry = job.get("dependencies")
    if entry is None:
        return None
    value = entry.value
    if not isinstance(value, Seq) or not all(
        isinstance(i, Scalar) and isinstance(i.value, str) for i in value.items
    ):
        raise JobFileError(path, entry.key_line, f"jobs:{name} dependencies should be an array of strings")
    return tuple((str(i.value), i.line) for i in value.items if isinstance(i, Scalar))


def _parallel(name: str, job: Map, path: Path) -> tuple[tuple[tuple[tuple[str, str], ...], ...] | None, bool]:
    entry = job.get("parallel")
    if entry is None:
        return None, False
    value = entry.value
    if isinstance(value, Scalar) and isinstance(value.value, int) and not isinstance(value.value, bool):
        if not 1 <= value.value <= MAX_PARALLEL:
            raise JobFileError(
                path,
                entry.key_line,
                f"jobs:{name}:parallel config must be less than or equal to {MAX_PARALLEL}"
                if value.value > MAX_PARALLEL
                else f"jobs:{name}:parallel config must be greater than or equal to 1",
            )
        return tuple(() for _ in range(value.value)), False
    if isinstance(value, Map) and value.keys() == ("matrix",) and isinstance(value.entries[0].value, Seq):
        nodes: list[tuple[tuple[str, str], ...]] = []
        for row in value.entries[0].value.items:
            if not isinstance(row, Map):
                raise JobFileError(
                    path, row.line, f"jobs:{name}:parallel:matrix config should be an array of hashes"
                )
            nodes += _combinations(row, name, path)
            if len(nodes) > MAX_PARALLEL:
                raise JobFileError(
                    path,
                    entry.key_line,
                    f"jobs:{name}:parallel:matrix config generates too many jobs (maximum is {MAX_PARALLEL})",
                )
        return tuple(nodes), True
    raise JobFileError(
        path, entry.key_line, f"jobs:{name}:parallel should be an integer or a hash, not {describe(value)}"
    )


def _combinations(row: Map, name: str, path: Path) -> list[tuple[tuple[str, str], ...]]:
    combos: list[tuple[tuple[str, str], ...]] = [()]
    for variable in row:
        value = variable.value
        items = value.items if isinstance(value, Seq) else (value,)
        texts = []
        for item in items:
            if not isinstance(item, Scalar):
                raise JobFileError(
                    path,
                    variable.key_line,
                    f"jobs:{name}:parallel:matrix variables should be a string or an array of strings",
                )
            texts.append(scalar_string(item))
        combos = [(*c, (variable.key, t)) for c in combos for t in texts]
        if len(combos) > MAX_PARALLEL:
            break
    return combos


def duration_text(text: str, where: str, path: Path) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise JobFileError(path, 0, f"{where} should be a duration") from exc
