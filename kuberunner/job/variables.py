"""Which job variables can reach a job at all: one rule for `exec` and `run`.

A stage exports its variables from a POSIX shell script, and the environment of a process is a list
of NUL-terminated strings, so a name must be a shell name and no value can hold a NUL byte. Such a
variable is refused, never silently dropped or mangled: the job would otherwise run without it.
"""

from __future__ import annotations

import re

MASKED_VARS_ENV = "KUBERUNNER_MASKED_VARS"
"""`kuberunner exec`: names (comma- or space-separated) of variables of the runner's own environment
that every job gets as masked variables, with their values from that environment, so no secret
needs to be in argv (which `ps` shows)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def variable_problem(key: str, value: str) -> str | None:
    """Why the variable `key` cannot be given to a job, in one line; None when it can."""
    if _NAME.fullmatch(key) is None:
        return (
            f"variable {key!r} is not a valid variable name "
            "(letters, digits and _, not starting with a digit)"
        )
    if "\0" in value:
        return f"variable {key!r} holds a NUL byte, which no environment variable can carry"
    return None
