"""Which .gitlab-ci.yml keywords we act on, which we know but ignore, and how a warning about them reads.

A keyword we do not support yet must never be silently dropped: the user would believe it took
effect. Keeping the tables in one place means supporting a keyword later is a one-line move from an
"ignored" set to an "acted on" set (plus the code that acts on it).
"""

from __future__ import annotations

import difflib

JOB_ACTED_ON = frozenset(
    {"script", "before_script", "after_script", "image", "variables", "timeout", "extends", "inherit"}
)
JOB_IGNORED = frozenset(
    {
        "allow_failure",
        "artifacts",
        "cache",
        "coverage",
        "dast_configuration",
        "dependencies",
        "environment",
        "except",
        "hooks",
        "id_tokens",
        "identity",
        "interruptible",
        "manual_confirmation",
        "needs",
        "only",
        "pages",
        "parallel",
        "release",
        "resource_group",
        "retry",
        "rules",
        "run",
        "secrets",
        "services",
        "stage",
        "tags",
        "trigger",
        "when",
    }
)
JOBS_WITHOUT_SCRIPT = ("trigger", "run")
"""Keywords that make a job valid without `script:` (a downstream pipeline, CI steps)."""

DEFAULT_ACTED_ON = frozenset({"image", "before_script", "after_script", "timeout"})
DEFAULT_IGNORED = frozenset(
    {"artifacts", "cache", "hooks", "id_tokens", "interruptible", "retry", "services", "tags"}
)

GLOBALS_LIKE_DEFAULT = ("image", "before_script", "after_script")
"""Deprecated top-level keywords that GitLab still reads as if they were under `default:`."""
TOP_LEVEL_IGNORED = frozenset({"stages", "types", "include", "workflow", "services", "cache"})
TOP_LEVEL_RESERVED = TOP_LEVEL_IGNORED | {"variables", "default", *GLOBALS_LIKE_DEFAULT}
"""Top-level keys that are not jobs."""

IMAGE_IGNORED = frozenset({"entrypoint", "pull_policy", "docker", "kubernetes"})
VARIABLE_FIELDS = frozenset({"value", "description", "options", "expand"})


def not_supported(where: str, keyword: str) -> str:
    """E.g. "job 'build': keyword 'services' is not supported yet and is ignored"."""
    prefix = f"{where}: " if where else ""
    return f"{prefix}keyword {keyword!r} is not supported yet and is ignored"


def unknown(where: str, keyword: str, known: frozenset[str]) -> str:
    """E.g. "job 'build': unknown keyword 'scirpt' is ignored (did you mean 'script'?)"."""
    prefix = f"{where}: " if where else ""
    close = difflib.get_close_matches(keyword, sorted(known), n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{prefix}unknown keyword {keyword!r} is ignored{hint}"


def job_label(name: str) -> str:
    return f"job {name!r}"
