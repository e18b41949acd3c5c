"""`spec:inputs` as GitLab reads them: a header document (`spec:` then `---`) declares the inputs of
a file, each with an optional `default`, `type` (string, number, boolean, array), `options` and
`regex`; the values given (by `include:inputs`, or on the command line for the main file) are
checked against it and `$[[ inputs.x ]]` in the rest of the file is replaced by them.

Errors use GitLab's words and name the input, e.g. `` `env` input: required value has not been
provided``; a value given for an input the header does not declare is an error too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from kuberunner.errors import JobFileError
from kuberunner.job.yaml_nodes import Entry, Map, Node, Scalar, Seq, describe, load_documents
from kuberunner.pipeline.plan.rules import scalar_string

INPUT_PATTERN = re.compile(r"\$\[\[\s*inputs\.([A-Za-z0-9_-]+)\s*\]\]")
INPUT_TYPES = ("string", "number", "boolean", "array")
MAX_INPUT_BYTES = 64 * 1024
"""A command-line input is a value, not a file: GitLab bounds them too."""


def split_header(documents: list[Node]) -> tuple[Map | None, list[Node]]:
    """The `spec:` header document, if the file starts with one, and the documents after it."""
    if len(documents) == 2 and isinstance(documents[0], Map) and documents[0].keys() == ("spec",):
        return documents[0], documents[1:]
    return None, documents


def main_file_documents(documents: list[Node], given: Mapping[str, str], path: Path) -> list[Node]:
    """The main file's documents with its header's inputs interpolated from `given` (the command
    line's text values, read as each input's `type` says); without a header, `given` must be empty."""
    header, rest = split_header(documents)
    if header is None and not given:
        return documents
    specs = _specs(header, path)
    typed: dict[str, Node] = {}
    for name, text in given.items():
        entry = specs.get(name)
        typed[name] = _from_text(name, text, entry, path)
    values = input_values(header, typed, path)
    return [interpolate(document, values, path) for document in rest]


def input_values(header: Map | None, given: dict[str, Node] | None, file: Path) -> dict[str, Node]:
    """Every declared input's value: the given one (checked) or its default; an input without
    either, or a given one not declared, is an error."""
    given = dict(given or {})
    values: dict[str, Node] = {}
    for entry in _specs(header, file).values():
        if entry.key in given:
            values[entry.key] = _checked(entry, given.pop(entry.key), file)
            continue
        default = entry.value.get("default") if isinstance(entry.value, Map) else None
        if default is None:
            raise JobFileError(
                file, entry.key_line, f"`{entry.key}` input: required value has not been provided"
            )
        values[entry.key] = _checked(entry, default.value, file, what="default value")
    if given:
        raise JobFileError(file, 0, f"unknown input arguments: {', '.join(given)}")
    return values


def _specs(header: Map | None, file: Path) -> dict[str, Entry]:
    if header is None:
        return {}
    spec = header.get("spec")
    if spec is None or not isinstance(spec.value, Map):
        raise JobFileError(file, header.line, "header:spec config should be a hash")
    inputs = spec.value.get("inputs")
    if inputs is None:
        return {}
    if not isinstance(inputs.value, Map):
        raise JobFileError(file, inputs.key_line, "header:spec:inputs config should be a hash")
    return {entry.key: entry for entry in inputs.value}


def _declared_type(entry: Entry, file: Path) -> str:
    kind = entry.value.get("type") if isinstance(entry.value, Map) else None
    if kind is None:
        return "string"
    text = kind.value.value if isinstance(kind.value, Scalar) else None
    if text not in INPUT_TYPES:
        raise JobFileError(
            file, kind.key_line, f"header:spec:inputs:{entry.key} input type unknown value: {text}"
        )
    return str(text)


def _from_text(name: str, text: str, entry: Entry | None, file: Path) -> Node:
    """A command-line value as the node its declared type makes of it (a string when undeclared,
    which `input_values` then refuses as unknown)."""
    if len(text.encode()) > MAX_INPUT_BYTES:
        raise JobFileError(file, 0, f"`{name}` input: the value is longer than {MAX_INPUT_BYTES // 1024} KiB")
    kind = _declared_type(entry, file) if entry is not None else "string"
    if kind == "number":
        try:
            number: int | float = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return Scalar(text, 0)  # refused by _checked with GitLab's message
        return Scalar(number, 0)
    if kind == "boolean" and text in ("true", "false"):
        return Scalar(text == "true", 0)
    if kind == "array":
        try:
            parsed = load_documents(text, file)
        except JobFileError:
            return Scalar(text, 0)
        if len(parsed) == 1 and isinstance(parsed[0], Seq):
            return parsed[0]
    return Scalar(text, 0)


def _checked(entry: Entry, value: Node, file: Path, *, what: str = "provided value") -> Node:
    name, line = entry.key, entry.key_line
    kind = _declared_type(entry, file)
    scalar = value.value if isinstance(value, Scalar) else None
    ok = {
        "string": isinstance(value, Scalar) and isinstance(scalar, str),
        "number": isinstance(value, Scalar)
        and isinstance(scalar, int | float)
        and not isinstance(scalar, bool),
        "boolean": isinstance(value, Scalar) and isinstance(scalar, bool),
        "array": isinstance(value, Seq),
    }[kind]
    if not ok:
        raise JobFileError(file, line, f"`{name}` input: {what} is not a {kind}")
    spec = entry.value if isinstance(entry.value, Map) else Map((), line)
    options = spec.get("options")
    if options is not None and isinstance(options.value, Seq):
        allowed = [o.value for o in options.value.items if isinstance(o, Scalar)]
        if scalar not in allowed:
            raise JobFileError(
                file,
                line,
                f"`{name}` input: `{scalar_string(value) if isinstance(value, Scalar) else describe(value)}` "
                "cannot be used because it is not in the list of allowed options",
            )
    regex = spec.get("regex")
    if regex is not None and isinstance(regex.value, Scalar) and isinstance(scalar, str):
        pattern = str(regex.value.value).removeprefix("/").removesuffix("/")
        try:
            matched = re.search(pattern, scalar) is not None
        except re.error as exc:
            raise JobFileError(file, regex.key_line, f"`{name}` input: invalid regular expression") from exc
        if not matched:
            raise JobFileError(file, line, f"`{name}` input: {what} does not match required RegEx pattern")
    return value


def interpolate(node: Node, values: dict[str, Node], file: Path) -> Node:
    """`node` with every `$[[ inputs.x ]]` replaced: a whole-value reference takes the input's node
    (a list stays a list), one inside text takes its text."""
    if isinstance(node, Scalar) and isinstance(node.value, str) and "$[[" in node.value:
        whole = INPUT_PATTERN.fullmatch(node.value.strip())
        if whole is not None:
            return _value(whole.group(1), values, file, node.line)
        return Scalar(_substitute(node.value, values, file, node.line), node.line)
    if isinstance(node, Seq):
        return Seq(tuple(interpolate(i, values, file) for i in node.items), node.line)
    if isinstance(node, Map):
        entries = []
        for e in node.entries:
            key = _substitute(e.key, values, file, e.key_line)
            entries.append(Entry(key, e.key_line, interpolate(e.value, values, file)))
        return Map(tuple(entries), node.line)
    return node


def _substitute(text: str, values: dict[str, Node], file: Path, line: int) -> str:
    def one(match: re.Match[str]) -> str:
        value = _value(match.group(1), values, file, line)
        if not isinstance(value, Scalar):
            raise JobFileError(
                file, line, f"input `{match.group(1)}` is {describe(value)}; only text fits in a string"
            )
        return scalar_string(value)

    return INPUT_PATTERN.sub(one, text)


def _value(name: str, values: dict[str, Node], file: Path, line: int) -> Node:
    if name not in values:
        raise JobFileError(file, line, f"unknown interpolation key: `{name}`")
    return values[name]
