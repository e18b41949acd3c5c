"""`include:` as GitLab merges it: each included file (its own includes first) deep-merged in order,
the including file last, so a file always overrides what it includes.

Local files (paths or wildcards, relative to the project, never outside it) and remote HTTPS files
(bounded in time and size) are read; `project`, `template` and `component` need a GitLab server and
are refused in one line. `spec:inputs` headers and `$[[ inputs.x ]]` are interpolated per file.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kuberunner.errors import JobFileError
from kuberunner.job.inheritance import deep_merge
from kuberunner.job.yaml_nodes import Entry, Map, Node, Scalar, Seq, describe, load_documents
from kuberunner.pipeline.plan.inputs import input_values, interpolate
from kuberunner.pipeline.plan.rules import RuleContext, evaluate_rules

MAX_INCLUDES = 150
"""GitLab's limit on included files per pipeline."""
MAX_NESTING = 100
MAX_REMOTE_BYTES = 4 * 1024 * 1024
REMOTE_TIMEOUT = 30.0
"""GitLab's own timeout for a remote include."""
SERVER_ONLY = ("project", "template", "component")
INCLUDE_KEYS = frozenset({"local", "remote", "rules", "inputs", "file", "ref", *SERVER_ONLY})

Fetch = Callable[[str], bytes]


def fetch_remote(url: str) -> bytes:
    """GET `url` within REMOTE_TIMEOUT in all (a slow drip included), at most MAX_REMOTE_BYTES;
    every failure is a ValueError saying why, for the caller's one line."""
    deadline = time.monotonic() + REMOTE_TIMEOUT
    chunks: list[bytes] = []
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=REMOTE_TIMEOUT) as response:
            while chunk := response.read(64 * 1024):
                size += len(chunk)
                if size > MAX_REMOTE_BYTES:
                    raise ValueError(f"it is larger than {MAX_REMOTE_BYTES // (1024 * 1024)} MiB")
                if time.monotonic() > deadline:
                    raise ValueError("a timeout error")
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        raise ValueError(f"the server answered {exc.code}") from exc
    except TimeoutError as exc:
        raise ValueError("a timeout error") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ValueError(str(getattr(exc, "reason", exc))) from exc
    return b"".join(chunks)


@dataclass(slots=True)
class Merged:
    root: Map
    origins: dict[str, Path] = field(default_factory=dict)
    """Which file last defined each top-level key, so errors name the right file."""


@dataclass(slots=True)
class _State:
    project_dir: Path
    context: RuleContext
    fetch: Fetch
    count: int = 0
    seen: set[str] = field(default_factory=set)


def resolve_includes(root: Map, path: Path, *, context: RuleContext, fetch: Fetch = fetch_remote) -> Merged:
    state = _State(context.project_dir.resolve(), context, fetch)
    return _resolve(root, path, state, depth=0)


def _resolve(root: Map, path: Path, state: _State, *, depth: int) -> Merged:
    include = root.get("include")
    own = Map(tuple(e for e in root.entries if e.key != "include"), root.line)
    if include is None:
        return Merged(own, {e.key: path for e in own})
    if depth >= MAX_NESTING:
        raise JobFileError(path, include.key_line, f"Maximum of {MAX_NESTING} nested includes are allowed!")
    merged = Map((), root.line)
    origins: dict[str, Path] = {}
    for item in _items(include, path):
        for included_path, included_root in _load(item, include, path, state):
            inner = _resolve(included_root, included_path, state, depth=depth + 1)
            merged = deep_merge(merged, inner.root)
            origins.update(inner.origins)
    merged = deep_merge(merged, own)
    origins.update({e.key: path for e in own})
    return Merged(merged, origins)


def _items(include: Entry, path: Path) -> list[Node]:
    value = include.value
    if isinstance(value, Seq):
        return list(value.items)
    if isinstance(value, Scalar | Map):
        return [value]
    raise JobFileError(
        path,
        include.key_line,
        f"include config should be a hash, a string or an array, not {describe(value)}",
    )


def _load(item: Node, include: Entry, path: Path, state: _State) -> list[tuple[Path, Map]]:
    line = getattr(item, "line", include.key_line)
    if isinstance(item, Scalar) and isinstance(item.value, str):
        spec = Map((Entry("remote" if "://" in item.value else "local", line, item),), line)
    elif isinstance(item, Map):
        spec = item
    else:
        raise JobFileError(path, line, f"include config should be a hash or a string, not {describe(item)}")
    unknown = [e.key for e in spec if e.key not in INCLUDE_KEYS]
    if unknown:
        raise JobFileError(path, line, f"include config contains unknown keys: {', '.join(unknown)}")
    for key in SERVER_ONLY:
        if spec.get(key) is not None:
            raise JobFileError(
                path,
                line,
                f"include:{key} needs a GitLab server; kuberunner exec includes only local and remote files",
            )
    rules = spec.get("rules")
    if rules is not None:
        outcome = evaluate_rules(rules, "include", path, state.context, workflow=True)
        if outcome.when == "never":
            return []
    inputs = _inputs(spec.get("inputs"), path)
    local, remote = spec.get("local"), spec.get("remote")
    if (local is None) == (remote is None):
        raise JobFileError(path, line, "include config must name exactly one of local or remote")
    found = []
    if local is not None:
        for file in _local_files(_text(local, path), local.key_line, path, state.project_dir):
            if _first_time(state, str(file), inputs):
                found.append((file, _read(_read_local(file, path, local.key_line), file, inputs)))
    elif remote is not None:
        url = _text(remote, path)
        if not url.startswith("https://"):
            raise JobFileError(path, remote.key_line, f"Remote file `{url}` is not a valid https URL")
        if not _first_time(state, url, inputs):
            return []
        try:
            data = state.fetch(url)
        except ValueError as exc:
            raise JobFileError(
                path, remote.key_line, f"Remote file `{url}` could not be fetched because of {exc}"
            ) from exc
        found.append((Path(url), _read(data, Path(url), inputs)))
    state.count += len(found)
    if state.count > MAX_INCLUDES:
        raise JobFileError(path, line, f"Maximum of {MAX_INCLUDES} includes are allowed")
    return found


def _local_files(pattern: str, line: int, path: Path, project_dir: Path) -> list[Path]:
    relative = pattern.lstrip("/")
    if not relative.endswith((".yml", ".yaml")):
        raise JobFileError(path, line, f"Included file `{pattern}` does not have YAML extension!")
    if any(c in relative for c in "*?["):
        globbed = re.sub(r"\*\*(?!/)", "**/*", relative)
        files = sorted(p for p in project_dir.glob(globbed) if p.is_file())
    else:
        files = [project_dir / relative]
        if not files[0].is_file():
            raise JobFileError(path, line, f"Local file `{pattern}` does not exist!")
    for file in files:
        if not file.resolve().is_relative_to(project_dir):
            raise JobFileError(path, line, f"Local file `{pattern}` is outside the project")
    return files


def _first_time(state: _State, key: str, inputs: dict[str, Node] | None) -> bool:
    """The same file with the same inputs twice is merged once, as GitLab deduplicates includes."""
    identity = f"{key}\0{sorted((k, repr(v)) for k, v in (inputs or {}).items())}"
    if identity in state.seen:
        return False
    state.seen.add(identity)
    return True


def _read_local(file: Path, path: Path, line: int) -> bytes:
    try:
        with file.open("rb") as handle:
            return handle.read(MAX_REMOTE_BYTES + 1)
    except OSError as exc:
        raise JobFileError(path, line, f"Local file `{file}` cannot be read: {exc.strerror or exc}") from exc


def _read(data: bytes, file: Path, inputs: dict[str, Node] | None) -> Map:
    if len(data) > MAX_REMOTE_BYTES:
        raise JobFileError(file, 0, f"is larger than {MAX_REMOTE_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobFileError(file, 0, "is not valid UTF-8") from exc
    documents = load_documents(text, file)
    header: Map | None = None
    if len(documents) == 2 and isinstance(documents[0], Map) and documents[0].keys() == ("spec",):
        header = documents[0]
        documents = documents[1:]
    if len(documents) != 1 or not isinstance(documents[0], Map):
        if documents and isinstance(documents[0], Scalar) and documents[0].value is None:
            return Map((), 1)
        raise JobFileError(file, 0, "Included file must be a mapping of jobs")
    values = input_values(header, inputs, file)
    return interpolate(documents[0], values, file)  # type: ignore[return-value]


def _inputs(entry: Entry | None, path: Path) -> dict[str, Node] | None:
    if entry is None:
        return None
    if not isinstance(entry.value, Map):
        raise JobFileError(path, entry.key_line, "include:inputs config should be a hash")
    return {e.key: e.value for e in entry.value}


def _text(entry: Entry, path: Path) -> str:
    if not (isinstance(entry.value, Scalar) and isinstance(entry.value.value, str)):
        raise JobFileError(path, entry.key_line, f"include:{entry.key} should be a string")
    return entry.value.value
