"""How one part of a .gitlab-ci.yml borrows from another: `!reference` tags and `extends:`.

Both follow GitLab: references are resolved first, against the file as written; then each job's
`extends:` parents (a name or a list, themselves extended first) are deep-merged in order, the job's
own keys last — mappings merge key by key, anything else (lists included) is replaced whole. Cycles
and missing names are errors at the line that names them. Defaults (`default:`) are applied later, by
the caller, to the merged jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kuberunner.errors import JobFileError
from kuberunner.job.yaml_nodes import Entry, Map, Node, Reference, Scalar, Seq, describe

MAX_REFERENCE_NESTING = 10
"""GitLab's limit for a !reference whose target holds another !reference."""

MAX_EXTENDS_DEPTH = 11
"""GitLab's limit for a chain of `extends:`."""


def resolve_references(root: Map, path: Path) -> Map:
    """Replace every `!reference [name, key, ...]` below `root` by the value it points at."""
    resolver = _ReferenceResolver(root, path)
    resolved = resolver.resolve(root)
    assert isinstance(resolved, Map)
    return resolved


class _ReferenceResolver:
    def __init__(self, root: Map, path: Path) -> None:
        self._root = root
        self._path = path
        # Shared (aliased) nodes are resolved once, so an alias-heavy file costs no more than its size.
        self._done: dict[int, Node] = {}
        self._active: list[tuple[str, ...]] = []

    def resolve(self, node: Node) -> Node:
        known = self._done.get(id(node))
        if known is not None:
            return known
        if isinstance(node, Reference):
            result = self._follow(node)
        elif isinstance(node, Seq):
            result = Seq(tuple(self.resolve(item) for item in node.items), node.line)
        elif isinstance(node, Map):
            entries = tuple(Entry(e.key, e.key_line, self.resolve(e.value)) for e in node.entries)
            result = Map(entries, node.line)
        else:
            result = node
        if not isinstance(node, Reference):
            self._done[id(node)] = result
        return result

    def _follow(self, reference: Reference) -> Node:
        shown = "!reference [" + ", ".join(reference.path) + "]"
        if reference.path in self._active:
            raise JobFileError(self._path, reference.line, f"{shown} is circular")
        if len(self._active) >= MAX_REFERENCE_NESTING:
            raise JobFileError(
                self._path, reference.line, f"{shown}: references nest more than {MAX_REFERENCE_NESTING} deep"
            )
        target: Node = self._root
        for name in reference.path:
            if (
                isinstance(target, Seq)
                and name.lstrip("-").isdigit()
                and -len(target.items) <= int(name) < len(target.items)
            ):
                target = target.items[int(name)]
                continue
            entry = target.get(name) if isinstance(target, Map) else None
            if entry is None:
                raise JobFileError(self._path, reference.line, f"{shown} could not be found")
            target = entry.value
        self._active.append(reference.path)
        try:
            return self.resolve(target)
        finally:
            self._active.pop()


def deep_merge(base: Map, override: Map) -> Map:
    """GitLab's merge for `extends:`: mappings merge recursively, every other value is replaced."""
    entries: dict[str, Entry] = {e.key: e for e in base.entries}
    for entry in override.entries:
        old = entries.get(entry.key)
        if old is not None and isinstance(old.value, Map) and isinstance(entry.value, Map):
            entries[entry.key] = Entry(entry.key, entry.key_line, deep_merge(old.value, entry.value))
        else:
            entries[entry.key] = entry
    return Map(tuple(entries.values()), override.line)


def resolve_extends(jobs: Mapping[str, Entry], path: Path) -> dict[str, Map]:
    """Every job of `jobs` (hidden ones included) with its `extends:` merged in and the key removed.

    `jobs` maps a job name to its top-level entry; an entry whose value is not a mapping is left out
    of the result, and naming it in `extends:` is an error.
    """
    resolver = _ExtendsResolver(jobs, path)
    return {name: resolver.resolve(name, ()) for name, entry in jobs.items() if isinstance(entry.value, Map)}


class _ExtendsResolver:
    def __init__(self, jobs: Mapping[str, Entry], path: Path) -> None:
        self._jobs = jobs
        self._path = path
        self._done: dict[str, Map] = {}

    def resolve(self, name: str, chain: tuple[str, ...]) -> Map:
        done = self._done.get(name)
        if done is not None:
            return done
        job = self._jobs[name].value
        assert isinstance(job, Map)
        extends = job.get("extends")
        if extends is None:
            self._done[name] = job
            return job
        merged = Map((), job.line)
        for parent, line in self._parents(name, extends):
            if parent in chain or parent == name:
                cycle = " -> ".join((*chain, name, parent))
                raise JobFileError(self._path, line, f"job {name!r}: circular 'extends': {cycle}")
            if len(chain) + 1 >= MAX_EXTENDS_DEPTH:
                raise JobFileError(
                    self._path,
                    line,
                    f"job {name!r}: 'extends' nests more than {MAX_EXTENDS_DEPTH} levels deep",
                )
            entry = self._jobs.get(parent)
            if entry is None:
                raise JobFileError(
                    self._path, line, f"job {name!r}: 'extends' names {parent!r}, which does not exist"
                )
            if not isinstance(entry.value, Map):
                raise JobFileError(
                    self._path,
                    line,
                    f"job {name!r}: cannot extend {parent!r}: it is {describe(entry.value)}, not a job",
                )
            merged = deep_merge(merged, self.resolve(parent, (*chain, name)))
        own = Map(tuple(e for e in job.entries if e.key != "extends"), job.line)
        result = deep_merge(merged, own)
        self._done[name] = result
        return result

    def _parents(self, name: str, extends: Entry) -> list[tuple[str, int]]:
        value = extends.value
        items: tuple[Node, ...] = value.items if isinstance(value, Seq) else (value,)
        parents = []
        for item in items:
            if not (isinstance(item, Scalar) and isinstance(item.value, str)):
                raise JobFileError(
                    self._path,
                    extends.key_line if item is value else item.line,
                    f"job {name!r}: 'extends' must be a job name or a list of job names, "
                    f"not {describe(item)}",
                )
            parents.append((item.value, item.line))
        return parents
