"""`rules:`, `workflow:rules:` and `only:`/`except:`: whether a job (or the pipeline) is created, and how.

A local run is a push pipeline on the checked-out branch; `RuleContext` carries what GitLab would
know about it (variables, the project directory for `exists:`, the changed files for `changes:`).
Shape errors are JobFileErrors with GitLab's wording, e.g. `jobs:build:rules:rule config contains
unknown keys: iff`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kuberunner.errors import JobFileError
from kuberunner.job.yaml_nodes import Entry, Map, Node, Scalar, Seq
from kuberunner.pipeline.plan import expression
from kuberunner.pipeline.plan.model import WHEN_VALUES

RULE_KEYS = frozenset({"if", "changes", "exists", "when", "allow_failure", "variables", "start_in", "needs"})
WORKFLOW_RULE_KEYS = frozenset({"if", "changes", "exists", "when", "variables", "auto_cancel"})
MAX_EXISTS_FILES = 50_000
"""GitLab stops looking after 10,000 files; a bound keeps `exists: **/*` on a huge tree cheap."""


@dataclass(frozen=True, slots=True)
class RuleContext:
    variables: Mapping[str, str]
    project_dir: Path
    changed: frozenset[str] | None = None
    """Paths changed against the previous commit; None: unknown (then `changes:` is true, as GitLab
    does for pipelines without a previous commit to compare with)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the first matching rule said; `when` "never" means the job is not created."""

    when: str | None
    allow_failure: bool | None = None
    variables: tuple[tuple[str, str], ...] = ()
    start_in: str | None = None


NOT_CREATED = Outcome("never")


def evaluate_rules(
    entry: Entry, where: str, path: Path, context: RuleContext, *, workflow: bool = False
) -> Outcome:
    """The first rule that matches decides; no match means the job (or pipeline) is not created."""
    if not isinstance(entry.value, Seq):
        raise JobFileError(path, entry.key_line, f"{where} config should be an array of hashes")
    allowed = WORKFLOW_RULE_KEYS if workflow else RULE_KEYS
    for rule in entry.value.items:
        if not isinstance(rule, Map):
            raise JobFileError(path, rule.line, f"{where}:rule config should be a hash")
        unknown = [e.key for e in rule if e.key not in allowed]
        if unknown:
            raise JobFileError(
                path, rule.line, f"{where}:rule config contains unknown keys: {', '.join(unknown)}"
            )
        if _rule_matches(rule, where, path, context):
            return _outcome(rule, where, path)
    return NOT_CREATED


def _rule_matches(rule: Map, where: str, path: Path, context: RuleContext) -> bool:
    condition = rule.get("if")
    if condition is not None:
        text = _string(condition, f"{where}:rule if", path)
        try:
            if not expression.evaluate(text, context.variables):
                return False
        except ValueError as exc:
            raise JobFileError(
                path, condition.key_line, f"{where}:rule if invalid expression syntax: {exc}"
            ) from exc
    exists = rule.get("exists")
    if exists is not None and not _exists(
        _patterns(exists, f"{where}:rule:exists", path), context.project_dir
    ):
        return False
    changes = rule.get("changes")
    if changes is not None:
        value = changes.value
        if isinstance(value, Map):
            paths_entry = value.get("paths")
            if paths_entry is None:
                raise JobFileError(
                    path, changes.key_line, f"{where}:rule:changes config should contain paths"
                )
            changes = paths_entry
        if not changed(_patterns(changes, f"{where}:rule:changes", path), context.changed):
            return False
    return True


def _outcome(rule: Map, where: str, path: Path) -> Outcome:
    when_entry = rule.get("when")
    when = None
    if when_entry is not None:
        when = _string(when_entry, f"{where}:rule when", path)
        if when not in WHEN_VALUES:
            raise JobFileError(path, when_entry.key_line, f"{where}:rule when unknown value: {when}")
    allow = rule.get("allow_failure")
    allow_failure = None
    if allow is not None:
        if not (isinstance(allow.value, Scalar) and isinstance(allow.value.value, bool)):
            raise JobFileError(path, allow.key_line, f"{where}:rule allow_failure should be a boolean value")
        allow_failure = allow.value.value
    variables: list[tuple[str, str]] = []
    variables_entry = rule.get("variables")
    if variables_entry is not None:
        if not isinstance(variables_entry.value, Map):
            raise JobFileError(
                path, variables_entry.key_line, f"{where}:rule:variables config should be a hash"
            )
        for variable in variables_entry.value:
            if not isinstance(variable.value, Scalar):
                raise JobFileError(
                    path,
                    variable.key_line,
                    f"{where}:rule:variables config should be a hash of key value pairs",
                )
            variables.append((variable.key, scalar_string(variable.value)))
    start = rule.get("start_in")
    start_in = _string(start, f"{where}:rule start_in", path) if start is not None else None
    return Outcome(when, allow_failure, tuple(variables), start_in)


def evaluate_only_except(job: Map, where: str, path: Path, context: RuleContext) -> bool:
    """GitLab's older `only:`/`except:`: refs, variables and changes; by default `only: [branches, tags]`."""
    only = job.get("only")
    if only is not None and not _policy_matches(only, f"{where}:only", path, context, default=True):
        return False
    excepted = job.get("except")
    return not (
        excepted is not None and _policy_matches(excepted, f"{where}:except", path, context, default=False)
    )


def _policy_matches(entry: Entry, where: str, path: Path, context: RuleContext, *, default: bool) -> bool:
    value = entry.value
    if (isinstance(value, Scalar) and isinstance(value.value, str)) or isinstance(value, Seq):
        return _refs_match(_patterns(entry, where, path), context.variables)
    if not isinstance(value, Map):
        raise JobFileError(path, entry.key_line, f"{where} config should be an array or a hash")
    unknown = [e.key for e in value if e.key not in ("refs", "variables", "changes", "kubernetes")]
    if unknown:
        raise JobFileError(path, value.line, f"{where} config contains unknown keys: {', '.join(unknown)}")
    # In a hash every given condition must hold (for except: any holding excludes... GitLab ANDs both).
    results = []
    refs = value.get("refs")
    if refs is not None:
        results.append(_refs_match(_patterns(refs, f"{where}:refs", path), context.variables))
    variables = value.get("variables")
    if variables is not None:
        expressions = _patterns(variables, f"{where}:variables", path)
        try:
            results.append(any(expression.evaluate(e, context.variables) for e in expressions))
        except ValueError as exc:
            raise JobFileError(
                path, variables.key_line, f"{where}:variables invalid expression syntax: {exc}"
            ) from exc
    changes = value.get("changes")
    if changes is not None:
        results.append(changed(_patterns(changes, f"{where}:changes", path), context.changed))
    kubernetes = value.get("kubernetes")
    if kubernetes is not None:
        results.append(True)  # GitLab: "active" when the project has a cluster; this run has one.
    return all(results) if results else default


_SPECIAL_REFS: dict[str, Callable[[Mapping[str, str]], bool]] = {
    "branches": lambda v: bool(v.get("CI_COMMIT_BRANCH")),
    "tags": lambda v: bool(v.get("CI_COMMIT_TAG")),
    "pushes": lambda v: v.get("CI_PIPELINE_SOURCE") == "push",
    "api": lambda v: v.get("CI_PIPELINE_SOURCE") == "api",
    "web": lambda v: v.get("CI_PIPELINE_SOURCE") == "web",
    "schedules": lambda v: v.get("CI_PIPELINE_SOURCE") == "schedule",
    "triggers": lambda v: v.get("CI_PIPELINE_SOURCE") == "trigger",
    "pipelines": lambda v: v.get("CI_PIPELINE_SOURCE") == "pipeline",
    "merge_requests": lambda v: v.get("CI_PIPELINE_SOURCE") == "merge_request_event",
    "external_pull_requests": lambda v: v.get("CI_PIPELINE_SOURCE") == "external_pull_request_event",
    "chat": lambda v: v.get("CI_PIPELINE_SOURCE") == "chat",
    "external": lambda v: v.get("CI_PIPELINE_SOURCE") == "external",
}


def _refs_match(patterns: list[str], variables: Mapping[str, str]) -> bool:
    ref = variables.get("CI_COMMIT_REF_NAME", "")
    for pattern in patterns:
        special = _SPECIAL_REFS.get(pattern)
        if special is not None:
            if special(variables):
                return True
        elif pattern.startswith("/") and len(pattern) > 1:
            try:
                if expression.evaluate(f"$R =~ {pattern}", {"R": ref}):
                    return True
            except ValueError:
                continue
        elif pattern.split("@", 1)[0] == ref:
            return True
    return False


def changed(patterns: list[str], files: frozenset[str] | None) -> bool:
    if files is None:
        return True
    return any(_glob_match(name, pattern) for pattern in patterns for name in files)


def _exists(patterns: list[str], root: Path) -> bool:
    for pattern in patterns:
        pattern = pattern.lstrip("/")
        if not any(c in pattern for c in "*?["):
            if (root / pattern).exists():
                return True
            continue
        for count, candidate in enumerate(root.glob(pattern.replace("**", "**/*").replace("**/*/*", "**/*"))):
            if count > MAX_EXISTS_FILES:
                break
            if candidate.exists():
                return True
    return False


def _glob_match(name: str, pattern: str) -> bool:
    """GitLab's `changes:` globs (File.fnmatch, PATHNAME|EXTGLOB): `*` stays in a directory, `**` does not."""
    regex = re.escape(pattern.lstrip("/")).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
    regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    regex = re.sub(r"\\\{([^}]*)\\\}", lambda m: "(?:" + "|".join(m.group(1).split(r"\,")) + ")", regex)
    return re.fullmatch(regex, name) is not None or fnmatch.fnmatchcase(name, pattern)


def _patterns(entry: Entry, where: str, path: Path) -> list[str]:
    value: Node = entry.value
    items = value.items if isinstance(value, Seq) else (value,)
    found = []
    for item in items:
        if not (isinstance(item, Scalar) and isinstance(item.value, str)):
            raise JobFileError(path, entry.key_line, f"{where} config should be an array of strings")
        found.append(item.value)
    return found


def _string(entry: Entry, where: str, path: Path) -> str:
    if not (isinstance(entry.value, Scalar) and isinstance(entry.value.value, str)):
        raise JobFileError(path, entry.key_line, f"{where} should be a string")
    return entry.value.value


def scalar_string(scalar: Scalar) -> str:
    value = scalar.value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
