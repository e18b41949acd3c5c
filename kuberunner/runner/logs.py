"""The runner's own log: GitLab Runner's `log_level` and `log_format`, one event per line.

Every line carries the job, pod and runner it is about, taken from a context variable that a job's
task binds (`bind`) and its child tasks inherit; the pod is filled in later on the same object, so
every task of the job sees it. Secrets a job or config.toml holds (tokens, masked variables) are cut
out of every line (`Scrubber`) before it is written, whatever code logged them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    # Nothing is logged above fatal: `panic` keeps only what must be said before dying.
    "panic": logging.CRITICAL + 10,
}
"""GitLab Runner's (logrus's) level names; `warning` is logrus's other spelling of `warn`."""
MASK = "[MASKED]"
MIN_SECRET = 4
"""Shorter values would cut common words out of every line (GitLab masks nothing under 8)."""


@dataclass(slots=True)
class LogFields:
    """What a line is about. Mutable: the pod becomes known after the job's tasks have started."""

    runner: str = ""
    job: int | None = None
    pod: str = ""


_fields: contextvars.ContextVar[LogFields | None] = contextvars.ContextVar("kuberunner_log", default=None)


def bind(*, runner: str, job: int | None = None) -> LogFields:
    """Make the current task's lines (and those of tasks it starts from now on) name `runner` and `job`."""
    fields = LogFields(runner=runner, job=job)
    _fields.set(fields)
    return fields


class Scrubber:
    """The secrets to cut out of log lines: held while their job runs, dropped after."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._ordered: tuple[str, ...] = ()

    def hold(self, values: Iterable[str]) -> Callable[[], None]:
        """Cut `values` out of every line until the returned function is called."""
        kept = [v for v in values if len(v) >= MIN_SECRET]
        for value in kept:
            self._held[value] = self._held.get(value, 0) + 1
        self._reorder()

        def release() -> None:
            if not kept:
                return
            for value in kept:
                self._held[value] -= 1
                if not self._held[value]:
                    del self._held[value]
            kept.clear()  # a second call releases nothing
            self._reorder()

        return release

    def _reorder(self) -> None:
        # Longest first, so a secret that contains another is cut whole.
        self._ordered = tuple(sorted(self._held, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


def _level_name(levelno: int) -> str:
    if levelno >= logging.CRITICAL:
        return "fatal"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    return "info" if levelno >= logging.INFO else "debug"


class _Formatter(logging.Formatter):
    def __init__(self, scrub: Scrubber) -> None:
        super().__init__()
        self._scrub = scrub

    def message(self, record: logging.LogRecord) -> str:
        return self._scrub(record.getMessage())

    def stack(self, record: logging.LogRecord) -> str | None:
        """A traceback only when debugging: at other levels the message says what went wrong."""
        if not record.exc_info or not logging.getLogger().isEnabledFor(logging.DEBUG):
            return None
        return self._scrub(self.formatException(record.exc_info))

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        found = _fields.get()
        if found is None:
            return {}
        pairs: dict[str, Any] = {
            "job": found.job,
            "pod": self._scrub(found.pod),
            "runner": self._scrub(found.runner),
        }
        return {key: value for key, value in pairs.items() if value not in (None, "")}


class TextFormatter(_Formatter):
    """`kuberunner: message  job=1 pod=… runner=…`: the message first, as before, fields after it."""

    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(self.message(record).splitlines())
        fields = " ".join(f"{key}={value}" for key, value in self.fields(record).items())
        line = f"kuberunner: {text}{'  ' + fields if fields else ''}"
        stack = self.stack(record)
        return f"{line}\n{stack}" if stack else line


class JsonFormatter(_Formatter):
    """One JSON object a line, with GitLab Runner's keys: level, msg, time, job, pod, runner."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "level": _level_name(record.levelno),
            "msg": self.message(record),
            "time": _rfc3339(record.created),
            **self.fields(record),
        }
        stack = self.stack(record)
        if stack:
            event["stack"] = stack
        return json.dumps(event, ensure_ascii=False)


def _rfc3339(created: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int(created % 1 * 1000):03d}Z"


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    def __init__(self, stream: TextIO, scrubber: Scrubber) -> None:
        super().__init__(stream)
        self.scrubber = scrubber

    def use(self, fmt: str) -> None:
        self.setFormatter(JsonFormatter(self.scrubber) if fmt == "json" else TextFormatter(self.scrubber))


def configure(*, level: str, fmt: str, stream: TextIO | None = None) -> Scrubber:
    """Route every logger to one handler on `stream` (stderr) in `fmt` at `level`, in place of one
    installed before; returns the scrubber it cuts secrets with."""
    handler = _Handler(stream or sys.stderr, Scrubber())
    handler.use(fmt)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level.lower()])
    return handler.scrubber


def adjust(*, level: str | None, fmt: str | None) -> Scrubber:
    """Apply config.toml's `log_level`/`log_format` (None: leave as is) to the handler `configure`
    installed (one in text at warn if none was); returns its scrubber."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _Handler)), None)
    if handler is None:
        configure(level=level or "warn", fmt=fmt or "text")
        return adjust(level=None, fmt=None)
    if fmt is not None:
        handler.use(fmt)
    if level is not None:
        root.setLevel(LEVELS[level.lower()])
    return handler.scrubber
