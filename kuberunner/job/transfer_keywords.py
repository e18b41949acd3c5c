"""`artifacts`, `cache` and `services` of a job in .gitlab-ci.yml, read into plain values for `exec`.

Shapes as GitLab accepts them: `cache` a mapping or a list of them, its `key` a string or
`{files, prefix}`; `services` a list of image names or of `{name, alias, entrypoint, command,
variables, pull_policy}`; `artifacts` with `paths`, `exclude`, `name`, `when`, `untracked`, `expire_in` and
`reports` (each report a path or a list). A wrong shape is a JobFileError at its line; a sub-key
kuberunner does not act on is a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kuberunner.errors import JobFileError
from kuberunner.job import values
from kuberunner.job.yaml_nodes import Entry, Map, Node, Scalar, Seq, describe

_WHEN = ("on_success", "on_failure", "always")
_POLICIES = ("pull", "push", "pull-push")


@dataclass(frozen=True, slots=True)
class Artifacts:
    paths: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    name: str = ""
    when: str = "on_success"
    untracked: bool = False
    expire_in: str = ""
    reports: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(report type, paths), e.g. ("junit", ("report.xml",))."""


@dataclass(frozen=True, slots=True)
class Cache:
    key: str = "default"
    key_files: tuple[str, ...] = ()
    """`key:files`: the key is derived from these files' contents (and `key_prefix`)."""
    key_prefix: str = ""
    paths: tuple[str, ...] = ()
    untracked: bool = False
    policy: str = "pull-push"
    when: str = "on_success"
    fallback_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    alias: str = ""
    entrypoint: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    pull_policy: tuple[str, ...] = ()
    """Kubernetes names (`IfNotPresent`…), in order; (): the one the build image gets."""


@dataclass(frozen=True, slots=True)
class Transfers:
    """What a job moves besides its script: None fields were not given."""

    artifacts: Artifacts | None = None
    caches: tuple[Cache, ...] = ()
    services: tuple[Service, ...] = ()


class _Reader:
    def __init__(self, where: str, path: Path, warnings: list[str]) -> None:
        self.where = where
        self.path = path
        self.warnings = warnings

    def fail(self, line: int, key: str, expected: str, node: Node) -> JobFileError:
        return JobFileError(
            self.path, line, f"{self.where}: {key!r} must be {expected}, not {describe(node)}"
        )

    def text(self, entry: Entry, key: str) -> str:
        value = entry.value
        if (
            isinstance(value, Scalar)
            and isinstance(value.value, str | int | float)
            and not isinstance(value.value, bool)
        ):
            return str(value.value)
        raise self.fail(entry.key_line, key, "a string", value)

    def flag(self, entry: Entry, key: str) -> bool:
        value = entry.value
        if isinstance(value, Scalar) and isinstance(value.value, bool):
            return value.value
        raise self.fail(entry.key_line, key, "true or false", value)

    def strings(self, entry: Entry, key: str, *, single: bool = False) -> tuple[str, ...]:
        value = entry.value
        if single and isinstance(value, Scalar) and isinstance(value.value, str):
            return (value.value,)
        if isinstance(value, Seq) and all(
            isinstance(i, Scalar) and isinstance(i.value, str) for i in value.items
        ):
            return tuple(str(i.value) for i in value.items if isinstance(i, Scalar))
        raise self.fail(entry.key_line, key, "a list of strings", value)

    def choice(self, entry: Entry, key: str, allowed: tuple[str, ...]) -> str:
        text = self.text(entry, key)
        if text not in allowed:
            raise JobFileError(
                self.path, entry.key_line, f"{self.where}: {key!r} must be one of {', '.join(allowed)}"
            )
        return text

    def mapping(self, entry: Entry, key: str) -> Map:
        if not isinstance(entry.value, Map):
            raise self.fail(entry.key_line, key, "a mapping", entry.value)
        return entry.value

    def ignored(self, key: str) -> None:
        self.warnings.append(f"{self.where}: keyword {key!r} is not supported yet and is ignored")


def read_artifacts(entry: Entry, where: str, path: Path, warnings: list[str]) -> Artifacts:
    reader = _Reader(where, path, warnings)
    found: dict[str, object] = {}
    for sub in reader.mapping(entry, "artifacts"):
        key = f"artifacts:{sub.key}"
        if sub.key in ("paths", "exclude"):
            found[sub.key] = reader.strings(sub, key)
        elif sub.key in ("name", "expire_in"):
            found[sub.key] = reader.text(sub, key)
        elif sub.key == "when":
            found["when"] = reader.choice(sub, key, _WHEN)
        elif sub.key == "untracked":
            found["untracked"] = reader.flag(sub, key)
        elif sub.key == "reports":
            reports = []
            for report in reader.mapping(sub, key):
                reports.append((report.key, reader.strings(report, f"{key}:{report.key}", single=True)))
            found["reports"] = tuple(reports)
        else:
            reader.ignored(key)
    return Artifacts(**found)  # type: ignore[arg-type]


def read_caches(entry: Entry, where: str, path: Path, warnings: list[str]) -> tuple[Cache, ...]:
    reader = _Reader(where, path, warnings)
    items = entry.value.items if isinstance(entry.value, Seq) else (entry.value,)
    caches = []
    for item in items:
        if not isinstance(item, Map):
            raise reader.fail(entry.key_line, "cache", "a mapping or a list of mappings", item)
        caches.append(_cache(reader, item))
    return tuple(caches)


def _cache(reader: _Reader, item: Map) -> Cache:
    found: dict[str, object] = {}
    for sub in item:
        key = f"cache:{sub.key}"
        if sub.key == "key":
            if isinstance(sub.value, Map):
                for part in sub.value:
                    if part.key == "files":
                        found["key_files"] = reader.strings(part, "cache:key:files")
                    elif part.key == "prefix":
                        found["key_prefix"] = reader.text(part, "cache:key:prefix")
                    else:
                        reader.ignored(f"cache:key:{part.key}")
            else:
                found["key"] = reader.text(sub, key)
        elif sub.key in ("paths", "fallback_keys"):
            found[sub.key] = reader.strings(sub, key)
        elif sub.key == "untracked":
            found["untracked"] = reader.flag(sub, key)
        elif sub.key == "policy":
            found["policy"] = reader.choice(sub, key, _POLICIES)
        elif sub.key == "when":
            found["when"] = reader.choice(sub, key, _WHEN)
        else:
            reader.ignored(key)
    return Cache(**found)  # type: ignore[arg-type]


def read_services(entry: Entry, where: str, path: Path, warnings: list[str]) -> tuple[Service, ...]:
    reader = _Reader(where, path, warnings)
    if not isinstance(entry.value, Seq):
        raise reader.fail(entry.key_line, "services", "a list", entry.value)
    services = []
    for item in entry.value.items:
        if isinstance(item, Scalar) and isinstance(item.value, str):
            services.append(Service(name=item.value))
            continue
        if not isinstance(item, Map):
            raise reader.fail(entry.key_line, "services", "a list of image names or mappings", item)
        found: dict[str, object] = {}
        for sub in item:
            key = f"services:{sub.key}"
            if sub.key in ("name", "alias"):
                found[sub.key] = reader.text(sub, key)
            elif sub.key in ("entrypoint", "command"):
                found[sub.key] = reader.strings(sub, key, single=True)
            elif sub.key == "variables":
                found["variables"] = tuple(
                    (v.key, reader.text(v, f"{key}:{v.key}")) for v in reader.mapping(sub, key)
                )
            elif sub.key == "pull_policy":
                found["pull_policy"] = values.pull_policies(sub, key, where, path)
            else:
                reader.ignored(key)
        if not found.get("name"):
            raise JobFileError(reader.path, item.line, f"{where}: every service needs a 'name'")
        services.append(Service(**found))  # type: ignore[arg-type]
    return tuple(services)


def read_job(
    job: Map, where: str, path: Path, warnings: list[str], *, inherited: Transfers | None = None
) -> Transfers | None:
    """The job's `artifacts`, `cache` and `services`: its own where it names the keyword, else what it
    inherits from `default:` (each keyword whole, never merged, as GitLab does); None when it has
    none of them."""
    inherited = inherited or Transfers()
    artifacts, caches, services = job.get("artifacts"), job.get("cache"), job.get("services")
    found = Transfers(
        artifacts=read_artifacts(artifacts, where, path, warnings)
        if artifacts is not None
        else inherited.artifacts,
        caches=read_caches(caches, where, path, warnings) if caches is not None else inherited.caches,
        services=read_services(services, where, path, warnings)
        if services is not None
        else inherited.services,
    )
    return None if found == Transfers() else found
