"""Which .gitlab-ci.yml keywords we act on, which we know but ignore, and how a warning about them reads.

A keyword we do not support yet must never be silently dropped: the user would believe it took
effect. Keeping the tables in one place means supporting a keyword later is a one-line move from an
"ignored" set to an "acted on" set (plus the code that acts on it).
"""

from __future__ import annotations

import difflib

JOB_ACTED_ON = frozenset(
    {"script", "before_script", "after_script", "image", "variables", "timeout", "extends", "inherit"}
    | {"artifacts", "cache", "services"}  # read by `transfer_keywords`
)
PIPELINE_ACTED_ON = frozenset(
    {
        "allow_failure",
        "dependencies",
        "except",
        "needs",
        "only",
        "parallel",
        "rules",
        "stage",
        "start_in",
        "when",
    }
)
"""Read by kuberunner.pipeline (which jobs run, when, after what), not by the job itself."""
JOB_IGNORED = frozenset(
    {
        "coverage",
        "dast_configuration",
        "environment",
        "hooks",
        "id_tokens",
        "identity",
        "interruptible",
        "manual_confirmation",
        "pages",
        "release",
        "resource_group",
        "retry",
        "run",
        "secrets",
        "tags",
        "trigger",
    }
)
"""GitLab keywords a job may hold that the runner does not act on yet: a warning, never an error."""
JOBS_WITHOUT_SCRIPT = ("trigger", "run")
"""Keywords that make a job valid without `script:` (a downstream pipeline, CI steps)."""

DEFAULT_ACTED_ON = frozenset(
    {"image", "before_script", "after_script", "timeout", "artifacts", "cache", "services"}
)
DEFAULT_IGNORED = frozenset({"hooks", "id_tokens", "interruptible", "retry", "tags"})

GLOBALS_LIKE_DEFAULT = ("image", "services", "cache", "before_script", "after_script")
"""Deprecated top-level keywords that GitLab still reads as if they were under `default:`."""
TOP_LEVEL_IGNORED = frozenset({"types"})
TOP_LEVEL_PIPELINE = frozenset({"stages", "include", "workflow"})
"""Read by kuberunner.pipeline (includes are merged before the jobs are read)."""
TOP_LEVEL_RESERVED = TOP_LEVEL_IGNORED | TOP_LEVEL_PIPELINE | {"variables", "default", *GLOBALS_LIKE_DEFAULT}
"""Top-level keys that are not jobs."""

IMAGE_IGNORED = frozenset({"entrypoint", "docker", "kubernetes"})
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


def unknown_keys(where: str, found: list[str]) -> str:
    """GitLab's own words, e.g. "jobs:build config contains unknown keys: scirpt"."""
    return f"{where} config contains unknown keys: {', '.join(found)}"


def job_label(name: str) -> str:
    return f"job {name!r}"
