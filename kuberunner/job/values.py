"""Read the value of one supported keyword (script lists, image, variables, timeout, inherit) from a node.

Each reader checks the shape GitLab accepts and raises a JobFileError at the offending line, naming
where the keyword was found ("job 'build'", "default"). Readers that meet a sub-keyword we do not
support add a warning to the list they are given instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kuberunner.errors import JobFileError
from kuberunner.job import keywords
from kuberunner.job.durations import MAX_JOB_TIMEOUT, parse_duration
from kuberunner.job.variables import variable_problem
from kuberunner.job.yaml_nodes import Entry, Map, Node, Scalar, Seq, describe
from kuberunner.podconfig.options import PULL_POLICIES

MAX_SCRIPT_NESTING = 10
"""GitLab flattens nested script lists (from !reference) up to 10 levels deep."""

MAX_SCRIPT_LINES = 100_000
"""YAML aliases can multiply a list exponentially; no real job has this many script lines."""


def _at(where: str) -> str:
    """The message prefix naming where a keyword was found; none for the top level."""
    return f"{where}: " if where else ""


def script_lines(entry: Entry, where: str, path: Path, *, required: bool = False) -> tuple[str, ...]:
    """A string or a (nested) list of strings, flattened as GitLab does; multi-line strings stay whole."""
    value = entry.value
    if isinstance(value, Scalar) and isinstance(value.value, str):
        lines: list[str] = [value.value]
    elif isinstance(value, Seq):
        lines = []
        _flatten(value, entry.key, where, path, lines, depth=1)
    else:
        raise JobFileError(
            path,
            entry.key_line,
            f"{_at(where)}{entry.key!r} must be a string or a list of strings, not {describe(value)}",
        )
    if required and not any(line.strip() for line in lines):
        raise JobFileError(path, entry.key_line, f"{_at(where)}{entry.key!r} must not be empty")
    return tuple(lines)


def _flatten(seq: Seq, key: str, where: str, path: Path, out: list[str], *, depth: int) -> None:
    if depth > MAX_SCRIPT_NESTING:
        raise JobFileError(
            path, seq.line, f"{_at(where)}{key!r} nests lists more than {MAX_SCRIPT_NESTING} levels deep"
        )
    for item in seq.items:
        if isinstance(item, Seq):
            _flatten(item, key, where, path, out, depth=depth + 1)
        elif isinstance(item, Scalar) and isinstance(item.value, str):
            if len(out) >= MAX_SCRIPT_LINES:
                raise JobFileError(
                    path, item.line, f"{_at(where)}{key!r} has more than {MAX_SCRIPT_LINES} lines"
                )
            out.append(item.value)
        else:
            raise JobFileError(
                path,
                item.line,
                f"{_at(where)}{key!r} must be a string or a list of strings, "
                f"not a list holding {describe(item)}",
            )


def image_name(entry: Entry, where: str, path: Path, warnings: list[str]) -> str:
    """`image: name` or `image: {name: ..., ...}`; the other image sub-keywords are warned about."""
    value = entry.value
    if isinstance(value, Map):
        name_entry = value.get("name")
        for sub in value:
            if sub.key in ("name", "pull_policy"):
                continue  # pull_policy: `image_pull_policy`
            keyword = f"image:{sub.key}"
            if sub.key in keywords.IMAGE_IGNORED:
                warnings.append(keywords.not_supported(where, keyword))
            else:
                warnings.append(keywords.unknown(where, keyword, frozenset()))
        if name_entry is None:
            raise JobFileError(path, entry.key_line, f"{_at(where)}'image' needs a 'name'")
        value = name_entry.value
        line = name_entry.key_line
    else:
        line = entry.key_line
    if not (isinstance(value, Scalar) and isinstance(value.value, str)):
        raise JobFileError(path, line, f"{_at(where)}'image' must be an image name, not {describe(value)}")
    if not value.value.strip():
        raise JobFileError(path, line, f"{_at(where)}'image' must not be empty")
    return value.value.strip()


def image_pull_policy(entry: Entry, where: str, path: Path) -> tuple[str, ...]:
    """`image: {pull_policy: ...}` as Kubernetes policy names (`Always`…), in order; () when not given.
    Whether the runner allows them is its own decision (`allowed_pull_policies`), made per job."""
    if not isinstance(entry.value, Map) or (policy := entry.value.get("pull_policy")) is None:
        return ()
    return pull_policies(policy, "image:pull_policy", where, path)


def pull_policies(policy: Entry, keyword: str, where: str, path: Path) -> tuple[str, ...]:
    """A `pull_policy` entry (of `image:` or a service) as Kubernetes policy names, in order, each once."""
    value = policy.value
    items = value.items if isinstance(value, Seq) else (value,)
    found: list[str] = []
    for item in items:
        name = item.value if isinstance(item, Scalar) and isinstance(item.value, str) else None
        kubernetes_name = PULL_POLICIES.get(name or "")
        if kubernetes_name is None:
            raise JobFileError(
                path,
                item.line,
                f"{_at(where)}{keyword!r} must be always, if-not-present or never "
                f"(or a list of them), not {describe(item)}",
            )
        found.append(kubernetes_name)
    if not found:
        raise JobFileError(path, policy.key_line, f"{_at(where)}{keyword!r} must not be empty")
    return tuple(dict.fromkeys(found))


def variables(entry: Entry, where: str, path: Path, warnings: list[str]) -> tuple[tuple[str, str], ...]:
    """A mapping of names to values (string, number, boolean, or `{value: ..., description: ...}`)."""
    if not isinstance(entry.value, Map):
        raise JobFileError(
            path,
            entry.key_line,
            f"{_at(where)}'variables' must be a mapping of names to values, not {describe(entry.value)}",
        )
    result = []
    for variable in entry.value:
        value = variable.value
        if isinstance(value, Map):
            value = _variable_fields(variable, value, where, path, warnings)
        if not isinstance(value, Scalar):
            raise JobFileError(
                path,
                variable.key_line,
                f"{_at(where)}variable {variable.key!r} must be a string, a number or a boolean, "
                f"not {describe(value)}",
            )
        text = scalar_text(value)
        problem = variable_problem(variable.key, text)
        if problem is not None:
            raise JobFileError(path, variable.key_line, f"{_at(where)}{problem}")
        result.append((variable.key, text))
    return tuple(result)


def _variable_fields(variable: Entry, fields: Map, where: str, path: Path, warnings: list[str]) -> Node:
    named = f"{_at(where)}variable {variable.key!r}"
    for field in fields:
        if field.key not in keywords.VARIABLE_FIELDS:
            warnings.append(keywords.unknown(named, field.key, keywords.VARIABLE_FIELDS))
    expand = fields.get("expand")
    if expand is not None and isinstance(expand.value, Scalar) and expand.value.value is False:
        # The shell expands $VAR in values at run time; we cannot yet keep one value literal.
        warnings.append(keywords.not_supported(named, "expand: false"))
    value = fields.get("value")
    return value.value if value is not None else Scalar("", fields.line)


def scalar_text(scalar: Scalar) -> str:
    """A variable's value as GitLab passes it to the job: always a string."""
    value = scalar.value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def timeout_seconds(entry: Entry, where: str, path: Path) -> int:
    """GitLab's duration text ("1h 30m"), or a whole number of seconds; at most GitLab's 1 month."""
    value = entry.value
    if isinstance(value, Scalar) and isinstance(value.value, int) and not isinstance(value.value, bool):
        if value.value <= 0:
            raise JobFileError(path, entry.key_line, f"{_at(where)}'timeout' must be positive")
        seconds = value.value
    elif isinstance(value, Scalar) and isinstance(value.value, str):
        try:
            seconds = parse_duration(value.value)
        except ValueError as exc:
            raise JobFileError(path, entry.key_line, f"{_at(where)}'timeout': {exc}") from exc
    else:
        raise JobFileError(
            path,
            entry.key_line,
            f"{_at(where)}'timeout' must be a duration like '1h 30m', not {describe(value)}",
        )
    if seconds > MAX_JOB_TIMEOUT:
        raise JobFileError(
            path,
            entry.key_line,
            f"{_at(where)}'timeout' must be at most 1 month ({MAX_JOB_TIMEOUT} seconds), as in GitLab",
        )
    return seconds


@dataclass(frozen=True, slots=True)
class Inherit:
    """`inherit:`: which `default:` keywords and which global variables a job takes (None = all)."""

    default: frozenset[str] | None = None
    variables: frozenset[str] | None = None


def inherit(entry: Entry, where: str, path: Path, warnings: list[str]) -> Inherit:
    if not isinstance(entry.value, Map):
        raise JobFileError(
            path, entry.key_line, f"{_at(where)}'inherit' must be a mapping, not {describe(entry.value)}"
        )
    chosen: dict[str, frozenset[str] | None] = {"default": None, "variables": None}
    for sub in entry.value:
        if sub.key not in chosen:
            warnings.append(keywords.unknown(where, f"inherit:{sub.key}", frozenset()))
            continue
        chosen[sub.key] = _inherit_choice(sub, where, path)
    return Inherit(default=chosen["default"], variables=chosen["variables"])


def _inherit_choice(sub: Entry, where: str, path: Path) -> frozenset[str] | None:
    value = sub.value
    if isinstance(value, Scalar) and isinstance(value.value, bool):
        return None if value.value else frozenset()
    if isinstance(value, Seq) and all(
        isinstance(i, Scalar) and isinstance(i.value, str) for i in value.items
    ):
        return frozenset(str(i.value) for i in value.items if isinstance(i, Scalar))
    raise JobFileError(
        path,
        sub.key_line,
        f"{_at(where)}'inherit:{sub.key}' must be true, false or a list of names, not {describe(value)}",
    )
