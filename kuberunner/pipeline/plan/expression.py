"""GitLab's `rules:if` / `only:variables` expression language, parsed and evaluated against variables.

The grammar (GitLab's `Gitlab::Ci::Pipeline::Expression`): operands are `$VAR` / `${VAR}`, quoted
strings, `/regex/flags` and `null`; operators `==`, `!=`, `=~`, `!~`, `&&` (binds tighter) and `||`;
parentheses group. A bare operand is true when it is a non-empty string. Undefined variables are null.
Errors are ValueError; the caller names the file, line and job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_EXPRESSION = 4096
"""No real `if:` is longer; it bounds the work a hostile file can ask for."""

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<var>\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<re>/(?:[^/\\]|\\.)*/[a-z]*)
    | (?P<null>null\b)
    | (?P<op>==|!=|=~|!~|&&|\|\|)
    | (?P<paren>[()])
    )""",
    re.VERBOSE,
)

Value = str | re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str


def tokenize(text: str) -> list[_Token]:
    if len(text) > MAX_EXPRESSION:
        raise ValueError(f"the expression is longer than {MAX_EXPRESSION} characters")
    tokens = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            raise ValueError(f"invalid expression syntax at {stripped[position : position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append(_Token(kind, match.group(kind)))
        position = match.end()
    if not tokens:
        raise ValueError("invalid expression syntax: the expression is empty")
    return tokens


def _regex(text: str) -> re.Pattern[str]:
    body, _, flags = text[1:].rpartition("/")
    value = 0
    for flag in flags:
        if flag == "i":
            value |= re.IGNORECASE
        elif flag == "m":
            # Ruby's /m is Python's DOTALL; ^ and $ are always per line in Ruby.
            value |= re.DOTALL
        elif flag == "x":
            value |= re.VERBOSE
        else:
            raise ValueError(f"invalid regular expression flag {flag!r} in {text}")
    try:
        return re.compile(body, value | re.MULTILINE)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {text}: {exc}") from exc


class _Parser:
    """Recursive descent over the tokens; evaluates as it goes (the language has no side effects)."""

    def __init__(self, tokens: list[_Token], variables: Mapping[str, str]) -> None:
        self._tokens = tokens
        self._at = 0
        self._variables = variables

    def parse(self) -> bool:
        result = self._or()
        if self._at != len(self._tokens):
            raise ValueError(f"invalid expression syntax near {self._tokens[self._at].text!r}")
        return result

    def _peek(self) -> _Token | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _or(self) -> bool:
        result = self._and()
        while (token := self._peek()) is not None and token.text == "||":
            self._at += 1
            right = self._and()
            result = result or right
        return result

    def _and(self) -> bool:
        result = self._comparison()
        while (token := self._peek()) is not None and token.text == "&&":
            self._at += 1
            right = self._comparison()
            result = result and right
        return result

    def _comparison(self) -> bool:
        token = self._peek()
        if token is not None and token.text == "(":
            self._at += 1
            result = self._or()
            closing = self._peek()
            if closing is None or closing.text != ")":
                raise ValueError("invalid expression syntax: missing ')'")
            self._at += 1
            return result
        left = self._operand()
        operator = self._peek()
        if operator is None or operator.kind != "op" or operator.text in ("&&", "||"):
            return (isinstance(left, str) and left != "") or isinstance(left, re.Pattern)
        self._at += 1
        right = self._operand()
        if operator.text in ("==", "!="):
            equal = _comparable(left) == _comparable(right)
            return equal if operator.text == "==" else not equal
        matched = _matches(left, right)
        return matched if operator.text == "=~" else not matched

    def _operand(self) -> Value:
        token = self._peek()
        if token is None or token.kind in ("op", "paren"):
            shown = token.text if token is not None else "the end"
            raise ValueError(f"invalid expression syntax: expected a value, found {shown!r}")
        self._at += 1
        if token.kind == "var":
            name = token.text.strip("${}")
            return self._variables.get(name)
        if token.kind == "str":
            return re.sub(r"\\(.)", r"\1", token.text[1:-1])
        if token.kind == "re":
            return _regex(token.text)
        return None


def _comparable(value: Value) -> object:
    return value.pattern if isinstance(value, re.Pattern) else value


def _matches(left: Value, right: Value) -> bool:
    if isinstance(right, str):
        # A variable may hold the pattern, written with its slashes as in GitLab.
        if not (right.startswith("/") and right.rstrip("imx").endswith("/") and len(right) > 1):
            raise ValueError(f"the right side of =~ must be a /regex/, not {right!r}")
        right = _regex(right)
    if not isinstance(right, re.Pattern):
        raise ValueError("the right side of =~ must be a /regex/")
    if not isinstance(left, str):
        return False
    return right.search(left) is not None


def evaluate(text: str, variables: Mapping[str, str]) -> bool:
    """Whether `text` holds for `variables`; ValueError when it is not an expression."""
    return _Parser(tokenize(text), variables).parse()
