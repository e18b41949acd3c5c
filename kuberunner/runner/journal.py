"""The per-job record a restarted `kuberunner run` takes its running jobs over from.

One JSON file per job in a 0700 directory next to config.toml, rewritten atomically (temp file,
fsync, rename; 0600) at each step that matters: the pod chosen, each stage started (its nonce and
kill token must be on disk before its start line reaches the pod), each stage ended, and whenever
GitLab acknowledges trace bytes past a new *checkpoint*.

A checkpoint pairs a byte of the pod's log file with a byte of the trace at a moment where nothing
is held back (no partial marker, no partial masked value) and the stage's section is open or just
closed: reading the log again from there and writing through a trace with the same masking yields
the very bytes that followed. Only checkpoints GitLab already holds are recorded, so a restarted
runner never needs bytes it cannot make again; GitLab's 416 answer tells it how many of the bytes it
makes again to skip.

Secrets kept: the job token (to talk to GitLab for the job) and the masked values (to go on masking
the output). Nothing else of the payload. Each running job holds an exclusive `flock` on its own lock
file, so a runner started while another still drains never adopts the jobs that one runs; the lock
dies with its process, even after `kill -9`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kuberunner.executor.results import Observation
from kuberunner.executor.resume import STAGES, USER_STAGES_DONE, ResumeFrom, resumable_stage
from kuberunner.executor.strategy import JobState
from kuberunner.gitlab.trace_upload import Chunk, TraceBuffer
from kuberunner.trace import Trace

log = logging.getLogger("kuberunner.runner")

DIRECTORY_NAME = "kuberunner-jobs"
POD_STAGE = "pod"
"""The checkpoint stage before any stage started: the job cannot be taken over, only ended."""
VERSION = 1
_RECORD_SUFFIX = ".json"
_LOCK_SUFFIX = ".lock"
MAX_FINAL_TAIL = 1 << 20
"""Past this much trace GitLab does not hold yet, a finished job's record keeps no tail (a runner
killed before its final update then reports a system failure)."""
MAX_RECORD_BYTES = 4 << 20
"""A record is a few KiB (plus a final tail); anything bigger is not ours."""


class BadRecord(Exception):
    """A record that cannot be read; str() names the file and why."""


def owner_label(system_id: str, directory: Path) -> str:
    """The owner label of this runner's pods: its system id and its record directory, so two runners
    of one machine with records apart never take each other's pods for orphans."""
    where = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:8]
    return f"{system_id}-{where}"


def runner_key(runner_token: str) -> str:
    """Which `[[runners]]` entry a record belongs to, without keeping the runner's token."""
    return hashlib.sha256(runner_token.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    stage: str
    ended: bool
    offset: int
    trace_bytes: int
    trace_crc: int
    line_start: bool
    job_bytes: int
    outcome: Observation | None
    records: dict[str, tuple[str, int]]
    """`kubelet` transport: per container, the last log record read (where reading goes on)."""


@dataclass(frozen=True, slots=True)
class Final:
    outcome: Observation
    start: int
    start_crc: int
    tail: bytes
    """The trace from byte `start` (whose CRC32 up to there is `start_crc`) to its end, masked."""
    line_start: bool
    job_bytes: int


@dataclass(slots=True)
class JobRecord:
    job_id: int
    job_token: str
    url: str
    runner: str
    namespace: str
    pod: str
    transport: str
    git_sources: bool
    deadline: float
    timeout: float
    masked: tuple[str, ...]
    output_limit: int
    failure_reasons: tuple[str, ...]
    after_script: bool
    after_script_when: str
    after_script_timeout: float | None
    strategy: str = "attach"
    resumable: bool = True
    """False for what a restarted runner cannot carry on: it ends the job (records of older versions
    said so for jobs with cache or artifact stages)."""
    before_script: tuple[str, ...] = ()
    """The stages between get_sources and step_script (`resume.stages_between`)."""
    after_stages: tuple[str, ...] = ()
    """The cache and artifact stages after the script the pod has scripts for (`resume.after_stages`)."""
    started: dict[str, tuple[str, str]] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    """Unix time each stage's start line was first recorded: a stage taken over keeps its own
    timeout (after_script's), counted from then."""
    current: str | None = None
    checkpoint: Checkpoint | None = None
    acknowledged: int = 0
    """Trace bytes GitLab holds, with their CRC32 and whether they end a line: where a job that
    cannot be carried on (its pod gone) goes on with its last lines."""
    acknowledged_crc: int = 0
    acknowledged_line_start: bool = True
    unsent: bytes = b""
    tentative: Checkpoint | None = None
    """The checkpoint that becomes good once GitLab holds `unsent` too (`settled`)."""
    """The trace bytes after `acknowledged` that are on their way to GitLab (masked): GitLab may
    hold them without the runner having heard so."""
    final: Final | None = None
    """Set once every stage ran, before the pod is deleted: how the job ended and the trace bytes
    GitLab did not hold yet, so a runner killed before the final update can still send it."""

    def settled(self) -> None:
        """GitLab holds `unsent` too (a restarted runner sent it again, or learnt GitLab had it)."""
        self.acknowledged_crc = zlib.crc32(self.unsent, self.acknowledged_crc)
        if self.unsent:
            self.acknowledged_line_start = self.unsent.endswith(b"\n")
        self.acknowledged += len(self.unsent)
        self.unsent = b""
        if self.tentative is not None:
            self.checkpoint, self.tentative = self.tentative, None

    def resume_from(self) -> ResumeFrom | None:
        point = self.checkpoint
        if not self.resumable or point is None or self.strategy != "attach":
            return None
        when = self.after_script_when if self.after_script_when in ("on_success", "on_failure") else "always"
        resume = ResumeFrom(
            namespace=self.namespace,
            pod=self.pod,
            git_sources=self.git_sources,
            stage=point.stage,
            ended=point.ended,
            offset=point.offset,
            records=dict(point.records),
            started=dict(self.started),
            started_at=dict(self.started_at),
            deadline=self.deadline,
            timeout=self.timeout,
            outcome=point.outcome,
            after_script=self.after_script,
            after_script_when=when,  # type: ignore[arg-type]
            after_script_timeout=self.after_script_timeout,
            before_script=self.before_script,
            after_stages=frozenset(self.after_stages),
        )
        return resume if resumable_stage(point.stage, resume) else None

    def to_json(self) -> dict[str, Any]:
        point = self.checkpoint
        return {
            "version": VERSION,
            "job_id": self.job_id,
            "job_token": self.job_token,
            "url": self.url,
            "runner": self.runner,
            "namespace": self.namespace,
            "pod": self.pod,
            "strategy": self.strategy,
            "resumable": self.resumable,
            "transport": self.transport,
            "git_sources": self.git_sources,
            "stages": list(STAGES),
            "before_script": list(self.before_script),
            "after_stages": list(self.after_stages),
            "current": self.current,
            "started": {stage: list(pair) for stage, pair in self.started.items()},
            "started_at": dict(self.started_at),
            "checkpoint": None if point is None else _checkpoint_json(point),
            "acknowledged": self.acknowledged,
            "acknowledged_crc": self.acknowledged_crc,
            "acknowledged_line_start": self.acknowledged_line_start,
            "unsent": base64.b64encode(self.unsent).decode(),
            "tentative": None if self.tentative is None else _checkpoint_json(self.tentative),
            "final": None if self.final is None else _final_json(self.final),
            "deadline": self.deadline,
            "timeout": self.timeout,
            "masked": list(self.masked),
            "output_limit": self.output_limit,
            "failure_reasons": list(self.failure_reasons),
            "after_script": {
                "present": self.after_script,
                "when": self.after_script_when,
                "timeout": self.after_script_timeout,
            },
        }

    @classmethod
    def from_json(cls, doc: Any) -> JobRecord:
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise ValueError("not a version 1 job record")
        after = doc["after_script"]
        point = doc.get("checkpoint")
        return cls(
            job_id=int(doc["job_id"]),
            job_token=str(doc["job_token"]),
            url=str(doc["url"]),
            runner=str(doc["runner"]),
            namespace=str(doc["namespace"]),
            pod=str(doc["pod"]),
            strategy=str(doc["strategy"]),
            resumable=bool(doc["resumable"]),
            before_script=tuple(str(v) for v in doc.get("before_script", ())),
            after_stages=tuple(str(v) for v in doc.get("after_stages", ())),
            transport=str(doc["transport"]),
            git_sources=bool(doc["git_sources"]),
            current=doc.get("current"),
            started={str(k): (str(v[0]), str(v[1])) for k, v in dict(doc["started"]).items()},
            started_at={str(k): float(v) for k, v in dict(doc.get("started_at", {})).items()},
            checkpoint=None if point is None else _checkpoint_from(point),
            acknowledged=int(doc["acknowledged"]),
            acknowledged_crc=int(doc["acknowledged_crc"]),
            acknowledged_line_start=bool(doc["acknowledged_line_start"]),
            unsent=base64.b64decode(doc["unsent"], validate=True),
            tentative=None if doc.get("tentative") is None else _checkpoint_from(doc["tentative"]),
            final=None if doc.get("final") is None else _final_from(doc["final"]),
            deadline=float(doc["deadline"]),
            timeout=float(doc["timeout"]),
            masked=tuple(str(v) for v in doc["masked"]),
            output_limit=int(doc["output_limit"]),
            failure_reasons=tuple(str(v) for v in doc["failure_reasons"]),
            after_script=bool(after["present"]),
            after_script_when=str(after["when"]),
            after_script_timeout=None if after["timeout"] is None else float(after["timeout"]),
        )


def _outcome_json(outcome: Observation | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return {
        "exit_codes": list(outcome.exit_codes),
        "system_error": outcome.system_error,
        "timed_out_after": outcome.timed_out_after,
        "canceled": outcome.canceled,
    }


def _outcome_from(doc: Any) -> Observation | None:
    if doc is None:
        return None
    return Observation(
        exit_codes=tuple(None if c is None else int(c) for c in doc["exit_codes"]),
        system_error=None if doc["system_error"] is None else str(doc["system_error"]),
        timed_out_after=None if doc["timed_out_after"] is None else float(doc["timed_out_after"]),
        canceled=bool(doc["canceled"]),
    )


def _checkpoint_json(point: Checkpoint) -> dict[str, Any]:
    return {
        "stage": point.stage,
        "ended": point.ended,
        "offset": point.offset,
        "trace_bytes": point.trace_bytes,
        "trace_crc": point.trace_crc,
        "line_start": point.line_start,
        "job_bytes": point.job_bytes,
        "outcome": _outcome_json(point.outcome),
        "records": {name: list(at) for name, at in point.records.items()},
    }


def _checkpoint_from(doc: Any) -> Checkpoint:
    return Checkpoint(
        stage=str(doc["stage"]),
        ended=bool(doc["ended"]),
        offset=int(doc["offset"]),
        trace_bytes=int(doc["trace_bytes"]),
        trace_crc=int(doc["trace_crc"]),
        line_start=bool(doc["line_start"]),
        job_bytes=int(doc["job_bytes"]),
        outcome=_outcome_from(doc.get("outcome")),
        records={str(k): (str(v[0]), int(v[1])) for k, v in dict(doc["records"]).items()},
    )


def _final_json(final: Final) -> dict[str, Any]:
    return {
        "outcome": _outcome_json(final.outcome),
        "start": final.start,
        "start_crc": final.start_crc,
        "tail": base64.b64encode(final.tail).decode(),
        "line_start": final.line_start,
        "job_bytes": final.job_bytes,
    }


def _final_from(doc: Any) -> Final:
    outcome = _outcome_from(doc["outcome"])
    if outcome is None:
        raise ValueError("a final record without an outcome")
    return Final(
        outcome=outcome,
        start=int(doc["start"]),
        start_crc=int(doc["start_crc"]),
        tail=base64.b64decode(doc["tail"], validate=True),
        line_start=bool(doc["line_start"]),
        job_bytes=int(doc["job_bytes"]),
    )


class Claim:
    """The exclusive lock on one job's lock file: whoever holds it runs the job."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Journal:
    """The record directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def prepare(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    def _record(self, job_id: int) -> Path:
        return self.directory / f"job-{job_id}{_RECORD_SUFFIX}"

    def _lock(self, job_id: int) -> Path:
        return self.directory / f"job-{job_id}{_LOCK_SUFFIX}"

    def claim(self, job_id: int) -> Claim | None:
        """The job's lock, or None when a live process holds it."""
        fd = os.open(self._lock(job_id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return Claim(fd)

    def write(self, record: JobRecord) -> None:
        path = self._record(record.job_id)
        temp = path.with_name(path.name + ".tmp")
        data = json.dumps(record.to_json(), separators=(",", ":")).encode()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)

    def remove(self, job_id: int, claim: Claim | None) -> None:
        for path in (self._record(job_id), self._record(job_id).with_name(f"job-{job_id}.json.tmp")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self._lock(job_id).unlink()
        if claim is not None:
            claim.release()

    def job_ids(self) -> list[int]:
        ids = []
        for path in sorted(self.directory.glob(f"job-*{_RECORD_SUFFIX}")):
            number = path.name[len("job-") : -len(_RECORD_SUFFIX)]
            if number.isdigit():
                ids.append(int(number))
        return ids

    def read(self, job_id: int) -> JobRecord:
        path = self._record(job_id)
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_RECORD_BYTES + 1)
            if len(data) > MAX_RECORD_BYTES:
                raise ValueError("larger than a job record can be")
            return JobRecord.from_json(json.loads(data))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise BadRecord(f"{path}: {exc}") from exc

    def pods(self) -> Iterator[tuple[str, str]]:
        """(namespace, pod) of every readable record, locked or not."""
        for job_id in self.job_ids():
            try:
                record = self.read(job_id)
            except BadRecord:
                continue
            yield record.namespace, record.pod


class Recorder:
    """Keeps one job's record current while it runs: the executor's progress and GitLab's acks."""

    def __init__(
        self, journal: Journal, record: JobRecord, claim: Claim, trace: Trace, buffer: TraceBuffer
    ) -> None:
        self._journal = journal
        self.record = record
        self._claim = claim
        self._trace = trace
        self._buffer = buffer
        self._candidates: list[Checkpoint] = []
        self.closed = False

    def progress(self, event: str, state: JobState) -> None:
        if self.closed:
            return
        record = self.record
        if event == "pod":
            record.namespace, record.pod = state.namespace, state.pod
            self._candidate(POD_STAGE, ended=False, state=state)
            self._write()
            return
        if event == "stage" and state.stage is not None and state.nonce and state.token:
            if record.started.get(state.stage) != (state.nonce, state.token):
                record.started_at[state.stage] = time.time()  # not again when taken over
            record.started[state.stage] = (state.nonce, state.token)
            record.current = state.stage
            if state.clean:
                self._candidate(state.stage, ended=False, state=state)
            self._write()  # the nonce must be on disk before the start line reaches the pod
            return
        if event == "output" and state.stage is not None and state.clean:
            if record.transport == "file":
                self._candidate(state.stage, ended=False, state=state)
            return
        if event == "stage_ended" and state.stage is not None:
            self._candidate(state.stage, ended=True, state=state)
            self._write()
            return
        if event == "stages_done":
            self._candidate(USER_STAGES_DONE, ended=True, state=state)
            return
        if event == "finished" and state.outcome is not None:
            tail = self._buffer.span(record.acknowledged, self._buffer.size)
            if len(tail) == self._buffer.size - record.acknowledged and len(tail) <= MAX_FINAL_TAIL:
                record.final = Final(
                    outcome=state.outcome,
                    start=record.acknowledged,
                    start_crc=record.acknowledged_crc,
                    tail=tail,
                    line_start=self._trace.at_line_start,
                    job_bytes=self._trace.job_bytes_written,
                )
                self._write()

    def sending(self, chunk: Chunk) -> None:
        if self.closed:
            return
        record = self.record
        end = chunk.start + len(chunk.data)
        unsent = self._buffer.span(record.acknowledged, end)
        if len(unsent) <= MAX_FINAL_TAIL and unsent != record.unsent:
            record.unsent = unsent
            within = [point for point in self._candidates if point.trace_bytes <= end]
            record.tentative = within[-1] if within else None
            self._write()

    def acknowledged(self, sent: int) -> None:
        if self.closed:
            return
        record = self.record
        changed = False
        if sent > record.acknowledged:
            held = self._buffer.span(record.acknowledged, sent)
            if len(held) == sent - record.acknowledged:
                record.acknowledged_crc = zlib.crc32(held, record.acknowledged_crc)
                record.acknowledged_line_start = held.endswith(b"\n")
                record.acknowledged = sent
                record.unsent = record.unsent[len(held) :]
                changed = True
        while self._candidates and self._candidates[0].trace_bytes <= sent:
            record.checkpoint = self._candidates.pop(0)
            changed = True
        if changed:
            record.tentative = None
            self._write()

    def _candidate(self, stage: str, *, ended: bool, state: JobState) -> None:
        if self.record.transport != "file" and state.held:
            return  # records are read again whole: only where nothing of one is held back
        point = Checkpoint(
            stage=stage,
            ended=ended,
            # The bytes read but not yet in the trace are read again from the log.
            offset=state.offset - state.held - self._trace.held,
            trace_bytes=self._buffer.size,
            trace_crc=self._buffer.crc,
            line_start=self._trace.at_line_start,
            job_bytes=self._trace.job_bytes_written,
            outcome=state.outcome,
            records=dict(state.records),
        )
        if self._candidates and self._candidates[-1].trace_bytes == point.trace_bytes:
            self._candidates[-1] = point
        else:
            self._candidates.append(point)
        if point.trace_bytes <= self._buffer.sent:
            self.acknowledged(self._buffer.sent)

    def _write(self) -> None:
        try:
            self._journal.write(self.record)
        except OSError as exc:
            log.warning("job %d: cannot write its record: %s", self.record.job_id, exc)

    def finish(self) -> None:
        """The job is over (reported, or given up): nothing is left to take over."""
        if self.closed:
            return
        self.closed = True
        self._journal.remove(self.record.job_id, self._claim)
