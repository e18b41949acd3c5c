"""POSIX shell quoting that survives every byte a job variable or script line can hold."""

from __future__ import annotations

import re

_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote(text: str) -> str:
    """Single-quote `text` for sh; a quote inside becomes '\\'' (close, escaped quote, reopen)."""
    if text and _SAFE.fullmatch(text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def is_variable_name(name: str) -> bool:
    """Only such names can be exported by a POSIX shell; others are skipped, not mangled."""
    return _NAME.fullmatch(name) is not None
