"""Turn a .gitlab-ci.yml into a Pipeline of JobSpecs, the way GitLab would read it.

The order follows GitLab: parse the YAML (yaml_nodes), resolve `!reference` and `extends:`
(inheritance), then apply `default:` and the global variables to each visible job and read the
keywords we act on (values). A keyword GitLab knows but we do not act on yet becomes a warning
naming the job and the keyword; an unknown keyword is an error in GitLab's words (`jobs:build config
contains unknown keys: foo`), as GitLab refuses the file. The pipeline keywords (stage, needs, rules,
when...) are left to kuberunner.pipeline, which also merges `include:` before calling `read_jobs`.
Anything we cannot run is a JobFileError with the file and line. Nothing here runs or expands anything:
`$VAR` in values stays as written, for the job's shell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from kuberunner.errors import JobFileError
from kuberunner.job import keywords, transfer_keywords, values
from kuberunner.job.inheritance import resolve_extends, resolve_references
from kuberunner.job.spec import JobSpec, Pipeline
from kuberunner.job.yaml_nodes import Entry, Map, Node, Scalar, describe, load_documents

__all__ = [
    "JobFileError",
    "ReadJobs",
    "jobs_document",
    "load_pipeline",
    "parse_pipeline",
    "read_jobs",
    "read_root",
    "select_jobs",
]

MAX_FILE_BYTES = 4 * 1024 * 1024
"""GitLab refuses CI files past a few MiB; a bound keeps a wrong path (a log, an image) from eating memory."""


def load_pipeline(path: Path) -> Pipeline:
    """Read and parse the CI file at `path`; every problem is a one-line JobFileError."""
    return parse_pipeline(read_text(path), path)


def read_text(path: Path) -> str:
    """The CI file's text; a missing, huge or non-UTF-8 file is a one-line JobFileError."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise JobFileError(path, 0, "no such file") from exc
    except IsADirectoryError as exc:
        raise JobFileError(path, 0, "is a directory, not a file") from exc
    except OSError as exc:
        raise JobFileError(path, 0, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise JobFileError(path, 0, f"is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise JobFileError(path, line, "is not valid UTF-8") from exc
    return text


def parse_pipeline(text: str, path: Path) -> Pipeline:
    """Parse CI file text; `path` is only used to name the file in errors and in the Pipeline."""
    warnings: list[str] = []
    return read_jobs(read_root(text, path, warnings), path, warnings).pipeline


def read_root(text: str, path: Path, warnings: list[str]) -> Map:
    """The document that holds the jobs, as written (includes not merged, references not resolved)."""
    return jobs_document(load_documents(text, path), path, warnings)


@dataclass(frozen=True, slots=True)
class ReadJobs:
    """The jobs of a file and the nodes they came from, for kuberunner.pipeline to read the pipeline
    keywords (stage, needs, rules...) of each job: `merged` has `extends:` applied."""

    pipeline: Pipeline
    root: Map
    merged: dict[str, Map]


def read_jobs(
    root: Map, path: Path, warnings: list[str], *, origins: Mapping[str, Path] | None = None
) -> ReadJobs:
    """The jobs of `root` (includes already merged into it); `origins` names the file that defined each
    top-level key, so an error about an included job names the included file."""
    root = resolve_references(root, path)
    return _PipelineReader(root, path, warnings, origins or {}).read()


def select_jobs(pipeline: Pipeline, names: Sequence[str]) -> tuple[JobSpec, ...]:
    """The named jobs in the order named, or every job in file order when `names` is empty.

    A name the file does not define as a runnable job is bad input: a JobFileError without a line,
    listing the jobs there are, e.g. `.gitlab-ci.yml: no job named 'tset' (jobs: build, test)`.
    """
    if not names:
        return pipeline.jobs
    chosen = []
    for name in names:
        job = pipeline.job(name)
        if job is None:
            available = ", ".join(j.name for j in pipeline.jobs) or "none"
            hidden = ", as names starting with '.' are hidden" if name.startswith(".") else ""
            raise JobFileError(pipeline.path, 0, f"no job named {name!r}{hidden} (jobs: {available})")
        chosen.append(job)
    return tuple(chosen)


def jobs_document(documents: list[Node], path: Path, warnings: list[str]) -> Map:
    """The document holding the jobs; a GitLab `spec:` header document may come before it (it warns:
    kuberunner.pipeline reads the header's inputs before it calls this)."""
    if len(documents) == 2 and isinstance(documents[0], Map) and documents[0].keys() == ("spec",):
        warnings.append(keywords.not_supported("", "spec"))
        documents = documents[1:]
    if len(documents) > 1:
        second = documents[1]
        raise JobFileError(
            path,
            second.line,
            "holds more than one YAML document; only a 'spec:' header may come before the jobs",
        )
    if not documents or (isinstance(documents[0], Scalar) and documents[0].value is None):
        raise JobFileError(path, 0, "is empty; it must define at least one job")
    root = documents[0]
    if not isinstance(root, Map):
        raise JobFileError(path, root.line, f"must be a mapping of job names to jobs, not {describe(root)}")
    return root


@dataclass(slots=True)
class _Defaults:
    """What `default:` (or the deprecated top-level globals) gives a job that does not say otherwise."""

    image: str | None = None
    image_pull_policy: tuple[str, ...] = ()
    before_script: tuple[str, ...] = ()
    after_script: tuple[str, ...] = ()
    timeout: int | None = None
    transfers: transfer_keywords.Transfers = field(default_factory=transfer_keywords.Transfers)
    """`artifacts`, `cache` and `services`: each given whole to a job that does not name it."""

    def read(self, entry: Entry, where: str, path: Path, warnings: list[str]) -> None:
        if entry.key == "artifacts":
            artifacts = transfer_keywords.read_artifacts(entry, where, path, warnings)
            self.transfers = replace(self.transfers, artifacts=artifacts)
        elif entry.key == "cache":
            caches = transfer_keywords.read_caches(entry, where, path, warnings)
            self.transfers = replace(self.transfers, caches=caches)
        elif entry.key == "services":
            services = transfer_keywords.read_services(entry, where, path, warnings)
            self.transfers = replace(self.transfers, services=services)
        elif entry.key == "image":
            self.image = values.image_name(entry, where, path, warnings)
            self.image_pull_policy = values.image_pull_policy(entry, where, path)
        elif entry.key == "timeout":
            self.timeout = values.timeout_seconds(entry, where, path)
        elif entry.key == "before_script":
            self.before_script = values.script_lines(entry, where, path)
        elif entry.key == "after_script":
            self.after_script = values.script_lines(entry, where, path)

    def only(self, chosen: frozenset[str] | None) -> _Defaults:
        """The defaults a job with `inherit:default:` `chosen` takes (None: all of them)."""
        if chosen is None:
            return self

        def pick(key: str) -> bool:
            return key in chosen

        return _Defaults(
            image=self.image if pick("image") else None,
            image_pull_policy=self.image_pull_policy if pick("image") else (),
            before_script=self.before_script if pick("before_script") else (),
            after_script=self.after_script if pick("after_script") else (),
            timeout=self.timeout if pick("timeout") else None,
            transfers=transfer_keywords.Transfers(
                artifacts=self.transfers.artifacts if pick("artifacts") else None,
                caches=self.transfers.caches if pick("cache") else (),
                services=self.transfers.services if pick("services") else (),
            ),
        )


class _PipelineReader:
    def __init__(self, root: Map, path: Path, warnings: list[str], origins: Mapping[str, Path]) -> None:
        self._root = root
        self._path = path
        self._warnings = warnings
        self._origins = origins

    def read(self) -> ReadJobs:
        job_entries = {e.key: e for e in self._root if e.key not in keywords.TOP_LEVEL_RESERVED}
        if all(name.startswith(".") for name in job_entries):
            raise JobFileError(self._path, 0, "defines no visible jobs (names starting with '.' are hidden)")
        for entry in self._root:
            if entry.key in keywords.TOP_LEVEL_IGNORED:
                self._warnings.append(keywords.not_supported("", entry.key))
        global_variables = self._global_variables()
        defaults = self._defaults()
        for name, entry in job_entries.items():
            if not name.startswith(".") and not isinstance(entry.value, Map):
                raise JobFileError(
                    self._path,
                    entry.key_line,
                    f"job {name!r} must be a mapping of keywords, not {describe(entry.value)}",
                )
        merged = resolve_extends(job_entries, self._path)
        jobs = []
        for name, entry in job_entries.items():
            if name.startswith("."):
                continue
            job = self._job(name, entry, merged[name], defaults, global_variables)
            if job is not None:
                jobs.append(job)
        pipeline = Pipeline(path=self._path, jobs=tuple(jobs), warnings=_unique(self._warnings))
        return ReadJobs(pipeline, self._root, merged)

    def _global_variables(self) -> tuple[tuple[str, str], ...]:
        entry = self._root.get("variables")
        return values.variables(entry, "", self._path, self._warnings) if entry else ()

    def _defaults(self) -> _Defaults:
        defaults = _Defaults()
        for key in keywords.GLOBALS_LIKE_DEFAULT:
            entry = self._root.get(key)
            if entry is not None:
                defaults.read(entry, key, self._path, self._warnings)
        entry = self._root.get("default")
        if entry is None:
            return defaults
        if not isinstance(entry.value, Map):
            raise JobFileError(
                self._path,
                entry.key_line,
                f"'default' must be a mapping of keywords, not {describe(entry.value)}",
            )
        for sub in entry.value:
            if sub.key in keywords.DEFAULT_ACTED_ON:
                defaults.read(sub, "default", self._path, self._warnings)
            elif sub.key in keywords.DEFAULT_IGNORED:
                self._warnings.append(keywords.not_supported("default", sub.key))
            elif sub.key == "variables":
                # GitLab rejects this; variables for every job belong at the top level.
                self._warnings.append(
                    "default: keyword 'variables' is not allowed here and is ignored "
                    "(use top-level 'variables')"
                )
            else:
                raise JobFileError(self._path, sub.key_line, keywords.unknown_keys("default", [sub.key]))
        return defaults

    def _job(
        self,
        name: str,
        entry: Entry,
        job: Map,
        defaults: _Defaults,
        global_variables: tuple[tuple[str, str], ...],
    ) -> JobSpec | None:
        where = keywords.job_label(name)
        warnings: list[str] = []
        inherit = values.Inherit()
        path = self._origins.get(name, self._path)
        inherit_entry = job.get("inherit")
        if inherit_entry is not None:
            inherit = values.inherit(inherit_entry, where, path, warnings)
        unknown = []
        for sub in job:
            if sub.key in keywords.JOB_IGNORED:
                warnings.append(keywords.not_supported(where, sub.key))
            elif sub.key not in keywords.JOB_ACTED_ON | keywords.PIPELINE_ACTED_ON:
                unknown.append(sub)
        if unknown:
            raise JobFileError(
                path, unknown[0].key_line, keywords.unknown_keys(f"jobs:{name}", [e.key for e in unknown])
            )
        script = job.get("script")
        if script is None:
            without = next((k for k in keywords.JOBS_WITHOUT_SCRIPT if job.get(k) is not None), None)
            if without is not None:
                self._warnings.append(
                    f"{where}: keyword {without!r} is not supported yet; the job is skipped"
                )
                return None
            raise JobFileError(
                path,
                entry.key_line,
                f"{where} has no 'script' (every job needs one, unless it uses 'trigger')",
            )
        inherited = defaults.only(inherit.default)

        def lines(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            own = job.get(key)
            return values.script_lines(own, where, path) if own is not None else default

        image_entry = job.get("image")
        image = values.image_name(image_entry, where, path, warnings) if image_entry else inherited.image
        pull_policy = (
            values.image_pull_policy(image_entry, where, path) if image_entry else inherited.image_pull_policy
        )
        timeout_entry = job.get("timeout")
        timeout = values.timeout_seconds(timeout_entry, where, path) if timeout_entry else inherited.timeout
        variables_entry = job.get("variables")
        own_variables = values.variables(variables_entry, where, path, warnings) if variables_entry else ()
        taken_globals = tuple(
            (key, value)
            for key, value in global_variables
            if inherit.variables is None or key in inherit.variables
        )
        return JobSpec(
            name=name,
            script=values.script_lines(script, where, path, required=True),
            before_script=lines("before_script", inherited.before_script),
            after_script=lines("after_script", inherited.after_script),
            image=image,
            image_pull_policy=pull_policy,
            variables=taken_globals + own_variables,
            timeout_seconds=timeout,
            transfers=transfer_keywords.read_job(job, where, path, warnings, inherited=inherited.transfers),
            warnings=_unique(warnings),
        )


def _unique(lines: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(lines))
