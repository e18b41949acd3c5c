"""Label and field selectors, parsed and matched the way the API server does it.

Pure: strings in, frozen values out, `matches(obj)` decides. The HTTP layer turns `SelectorError`
into a 400 Status; the store and the watch fan-out only call `matches`.

Label grammar (apimachinery labels.Parse): comma-separated requirements, each one of
`k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k>N`, `k<N`.
Field grammar (fields.ParseSelector): `k=v`, `k==v`, `k!=v`, with `\\` escaping `,`, `=`, `!` and `\\`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

Operator = Literal["=", "!=", "in", "notin", "exists", "!exists", "gt", "lt"]

_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# Which fields each resource can be selected on; everything else is "field label not supported".
_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
FIELDS: dict[str, tuple[str, ...]] = {
    "pods": (
        *_COMMON_FIELDS,
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "events": (
        *_COMMON_FIELDS,
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "secrets": (*_COMMON_FIELDS, "type"),
    "configmaps": _COMMON_FIELDS,
    "namespaces": (*_COMMON_FIELDS, "status.phase"),
    "nodes": ("metadata.name", "spec.unschedulable"),
}


class SelectorError(ValueError):
    """The selector text cannot be parsed or names a field the resource does not support."""


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        # gt / lt: both sides must be integers, as in Go.
        if not present or not _is_int(value):
            return False
        bound = int(self.values[0])
        return int(value) > bound if self.op == "gt" else int(value) < bound


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, obj: dict[str, Any]) -> bool:
        labels = _labels_of(obj)
        return all(r.matches(labels) for r in self.requirements)


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    negate: bool
    value: str


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: dict[str, Any]) -> bool:
        for r in self.requirements:
            equal = field_value(obj, r.field) == r.value
            if equal == r.negate:
                return False
        return True


def _is_int(text: str) -> bool:
    return re.fullmatch(r"-?[0-9]+", text) is not None


def _labels_of(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return labels if isinstance(labels, dict) else {}


def field_value(obj: dict[str, Any], path: str) -> str:
    """The string form of a selectable field; a missing field is "" (as the real field sets do)."""
    if path == "source":
        path = "source.component"
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


_SET_RE = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")
_CMP_RE = re.compile(r"^\s*([^\s!=<>]+)\s*(==|=|!=|>|<)\s*(.*?)\s*$")


def parse_label_selector(text: str) -> LabelSelector:
    if not text.strip():
        return LabelSelector()
    reqs: list[Requirement] = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            raise SelectorError(f"unable to parse requirement: found '', expected: identifier in {text!r}")
        reqs.append(_parse_requirement(part))
    return LabelSelector(tuple(reqs))


def _parse_requirement(part: str) -> Requirement:
    if m := _SET_RE.match(part):
        key, op, inner = m.group(1), m.group(2), m.group(3)
        values = tuple(v.strip() for v in inner.split(",")) if inner.strip() else ()
        if not values:
            raise SelectorError(
                "unable to parse requirement: for 'in', 'notin' operators, "
                f"values set can't be empty ({part!r})"
            )
        _check_key(key)
        for v in values:
            _check_value(v)
        return Requirement(key, "in" if op == "in" else "notin", values)
    if m := _CMP_RE.match(part):
        key, op, value = m.group(1), m.group(2), m.group(3)
        _check_key(key)
        if op in ("<", ">"):
            if not _is_int(value):
                raise SelectorError(
                    "unable to parse requirement: for 'Gt', 'Lt' operators, "
                    f"the value must be an integer ({part!r})"
                )
            return Requirement(key, "gt" if op == ">" else "lt", (value,))
        _check_value(value)
        return Requirement(key, "!=" if op == "!=" else "=", (value,))
    if part.startswith("!"):
        key = part[1:].strip()
        _check_key(key)
        return Requirement(key, "!exists")
    _check_key(part)
    return Requirement(part, "exists")


def _check_key(key: str) -> None:
    name = key.rsplit("/", 1)[-1]
    if not _KEY.match(key) or len(name) > 63:
        raise SelectorError(
            f"unable to parse requirement: invalid label key {key!r}: name part must consist "
            "of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character"
        )
    if key.count("/") > 1:
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r}")


def _check_value(value: str) -> None:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(
            f"unable to parse requirement: invalid label value: {value!r}: a valid label "
            "must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )


def parse_field_selector(text: str, resource: str) -> FieldSelector:
    if not text.strip():
        return FieldSelector()
    allowed = FIELDS.get(resource, _COMMON_FIELDS)
    reqs: list[FieldRequirement] = []
    for term in _split_escaped(text, ","):
        field, negate, value = _parse_field_term(term)
        if field not in allowed:
            raise SelectorError(f"field label not supported: {field}")
        reqs.append(FieldRequirement(field, negate, value))
    return FieldSelector(tuple(reqs))


def _parse_field_term(term: str) -> tuple[str, bool, str]:
    for op in ("!=", "==", "="):
        idx = _find_unescaped(term, op)
        if idx >= 0:
            field = _unescape(term[:idx]).strip()
            value = _unescape(term[idx + len(op) :])
            return field, op == "!=", value
    raise SelectorError(f"invalid selector: '{term}'; can't understand '{term}'")


def _find_unescaped(text: str, needle: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(needle, i):
            return i
        i += 1
    return -1


def _split_escaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    start = 0
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _unescape(text: str) -> str:
    out = ""
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            if text[i + 1] not in "\\,=!":
                raise SelectorError(f"invalid field selector: invalid escape sequence in {text!r}")
            out += text[i + 1]
            i += 2
            continue
        out += text[i]
        i += 1
    return out
