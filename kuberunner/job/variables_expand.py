"""`$VAR` and `${VAR}` expanded where GitLab Runner expands them before any shell sees the text.

Image and service names, cache keys, artifact names and paths, and variable values that reference
other variables (unless `expand: false`, GitLab's `raw`). As GitLab Runner does: one level (a value
is expanded with the others' values as given, not expanded again), an unknown variable becomes the
empty string, `$$` is a literal `$`, and a `$` before anything that is not a name stays as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_REFERENCE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand(text: str, values: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return "$" if name is None else values.get(name, "")

    return _REFERENCE.sub(one, text)


def expand_values(
    variables: Iterable[tuple[str, str]], *, raw: frozenset[str] = frozenset()
) -> tuple[tuple[str, str], ...]:
    """Each value expanded with the values of all the variables (a later key wins), except the
    `raw` keys, kept as given."""
    items = tuple(variables)
    values = dict(items)
    return tuple((key, value if key in raw else expand(value, values)) for key, value in items)
