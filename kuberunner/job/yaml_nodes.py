"""Load YAML into small immutable nodes that remember their line, so every later error can say FILE:LINE.

ruamel.yaml's round-trip loader knows where each key and item was, but only through its own
containers, which are mutable and lose the position of keys brought in by `<<:` merges. This module
turns its output once into plain frozen nodes (`Map`, `Seq`, `Scalar`, and `Reference` for GitLab's
`!reference [job, key]` tag) and translates every YAML problem into a JobFileError. It knows nothing of
GitLab's keywords; `gitlab_ci` gives the nodes their meaning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from kuberunner.errors import JobFileError

MAX_DEPTH = 100
"""Deeper nesting is no CI configuration (GitLab stops at 100 too) and would exhaust recursion."""

ScalarValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Scalar:
    value: ScalarValue
    line: int


@dataclass(frozen=True, slots=True)
class Seq:
    items: tuple[Node, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    key_line: int
    value: Node


@dataclass(frozen=True, slots=True)
class Map:
    entries: tuple[Entry, ...]
    line: int

    def get(self, key: str) -> Entry | None:
        return next((e for e in self.entries if e.key == key), None)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def keys(self) -> tuple[str, ...]:
        return tuple(e.key for e in self.entries)


@dataclass(frozen=True, slots=True)
class Reference:
    """GitLab's `!reference [job, key, ...]`: the value found at that path, resolved after loading."""

    path: tuple[str, ...]
    line: int


Node = Scalar | Seq | Map | Reference


def describe(node: Node) -> str:
    """How an error message names the kind of value the user wrote."""
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    if isinstance(node, Reference):
        return "a !reference"
    value = node.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    return "a string"


def load_documents(text: str, path: Path) -> list[Node]:
    """Parse every YAML document of `text`; a problem becomes a JobFileError at its line."""
    yaml = YAML(typ="rt")
    try:
        # ruamel warns about e.g. reused anchors, which is valid YAML; keep it from escaping.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = list(yaml.load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # An error "at the end of the stream" points past the last line; name the last line instead.
        last_line = max(1, len(text.splitlines()))
        line = min(mark.line + 1, last_line) if mark is not None else 0
        problem = exc.problem or exc.context or "cannot parse"
        raise JobFileError(path, line, f"invalid YAML: {problem}") from exc
    except YAMLError as exc:
        raise JobFileError(path, 0, f"invalid YAML: {exc}") from exc
    except RecursionError as exc:
        raise JobFileError(path, 0, "invalid YAML: nested too deeply") from exc
    converter = _Converter(path)
    return [converter.node(doc, 1, 0) for doc in raw]


class _Converter:
    def __init__(self, path: Path) -> None:
        self._path = path
        # Aliases share one ruamel object: convert it once, and notice an alias inside itself.
        self._done: dict[int, Node] = {}
        self._in_progress: set[int] = set()

    def error(self, line: int, message: str) -> JobFileError:
        return JobFileError(self._path, line, message)

    def node(self, raw: Any, line: int, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.error(line, f"the YAML is nested more than {MAX_DEPTH} levels deep")
        if isinstance(raw, CommentedMap | CommentedSeq):
            key = id(raw)
            if key in self._done:
                return self._done[key]
            if key in self._in_progress:
                raise self.error(line, "a YAML alias refers to a value that contains it")
            self._in_progress.add(key)
            node = self._map(raw, depth) if isinstance(raw, CommentedMap) else self._seq(raw, line, depth)
            self._in_progress.discard(key)
            self._done[key] = node
            return node
        if isinstance(raw, TaggedScalar):
            raise self.error(line, f"unknown YAML tag '{raw.tag.value}'")
        if raw is None or isinstance(raw, str | int | float | bool):
            return Scalar(_plain(raw), line)
        raise self.error(line, f"unsupported YAML value {type(raw).__name__}")

    def _map(self, raw: CommentedMap, depth: int) -> Map:
        line = raw.lc.line + 1
        tag = _tag(raw)
        if tag is not None:
            raise self.error(line, f"unknown YAML tag '{tag}'")
        entries = []
        for key in raw:
            key_line, value_line = _key_lines(raw, key, line)
            if isinstance(key, bool) or key is None or not isinstance(key, str | int | float):
                raise self.error(key_line, f"keys must be strings, not {describe(Scalar(_plain(key), 0))}")
            entries.append(Entry(str(key), key_line, self.node(raw[key], value_line, depth + 1)))
        return Map(tuple(entries), line)

    def _seq(self, raw: CommentedSeq, line: int, depth: int) -> Seq | Reference:
        line = raw.lc.line + 1
        tag = _tag(raw)
        if tag == "!reference":
            # Names, and list indexes (GitLab reads `!reference [.setup, script, 0]` as the first line).
            parts = [
                item
                for item in raw
                if isinstance(item, str) or (isinstance(item, int) and not isinstance(item, bool))
            ]
            if not raw or len(parts) != len(raw):
                raise self.error(line, "!reference must be a list of names, e.g. !reference [.setup, script]")
            return Reference(tuple(str(item) for item in raw), line)
        if tag is not None:
            raise self.error(line, f"unknown YAML tag '{tag}'")
        items = []
        for index, item in enumerate(raw):
            item_line = raw.lc.item(index)[0] + 1
            items.append(self.node(item, item_line, depth + 1))
        return Seq(tuple(items), line)


def _plain(raw: Any) -> ScalarValue:
    """ruamel's scalar subclasses (ScalarFloat, HexInt, LiteralScalarString) as plain Python values."""
    if raw is None or isinstance(raw, bool):
        return raw
    if isinstance(raw, int):
        return int(raw)
    if isinstance(raw, float):
        return float(raw)
    return str(raw)


def _tag(raw: CommentedMap | CommentedSeq) -> str | None:
    tag = getattr(raw, "tag", None)
    value = getattr(tag, "value", None)
    return value if isinstance(value, str) else None


def _key_lines(raw: CommentedMap, key: Any, fallback: int, depth: int = 0) -> tuple[int, int]:
    """(line of the key, line of its value), 1-based; a key from a `<<:` merge is found in its source."""
    data = raw.lc.data
    if key in data:
        key_line, _, value_line, _ = data[key]
        return key_line + 1, value_line + 1
    if depth < MAX_DEPTH:
        for source in getattr(raw, "merge", None) or ():
            # Older ruamel versions keep (position, map) pairs, newer ones the maps.
            merged = source[-1] if isinstance(source, tuple) else source
            if isinstance(merged, CommentedMap) and key in merged:
                return _key_lines(merged, key, fallback, depth + 1)
    return fallback, fallback
