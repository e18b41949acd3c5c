"""`kuberunner run`'s Prometheus metrics: GitLab Runner's names and labels where it has them, ours after.

One `RunnerMetrics` per process holds its own registry (never the library's global one, so two
runners in one test process do not share counts). Each `[[runners]]` entry gets an `EntryMetrics`,
which the GitLab client, the executor and the job handling call through plain methods; every job gets
a `JobMetrics` that keeps it in the `gitlab_runner_jobs` gauge until it ends. The bases
(`EntryWatch`, `JobWatch`) do nothing, for code run without metrics.

The `runner` label is GitLab Runner's short token (`short_token`), as in its logs.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kuberunner.config import RunnerEntry
from kuberunner.executor.observer import ExecutorObserver
from kuberunner.executor.strategy import JobState
from kuberunner.runner import logs

Progress = Callable[[str, JobState], None]

JOB_DURATION_BUCKETS = (30, 60, 300, 600, 1800, 3600, 7200, 10800, 18000, 36000)
"""GitLab Runner's buckets for `gitlab_runner_job_duration_seconds`."""
STAGE_START_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
ENTRY = ("runner", "system_id")


_HEX_DATE = re.compile(r"[0-9A-Fa-f]{7}")


def short_token(token: str) -> str:
    """GitLab Runner's short form of a runner token, its `runner` label and log field: 9 characters
    after a `glrt-`/`glrtr-`/`glcbt-` prefix, 17 of a `GR` token with its rotation date, else 8."""
    if len(token) < 8:
        return token
    for prefix in ("glrt-", "glrtr-", "glcbt-"):
        if token.startswith(prefix):
            return token[len(prefix) : len(prefix) + 9]
    if token.startswith("GR") and len(token) >= 17 and _HEX_DATE.fullmatch(token[2:9]):
        return token[:17]
    return token[:8]


def endpoint_of(method: str, path: str) -> str:
    """GitLab Runner's `endpoint` label values for the calls this runner makes."""
    if path == "/jobs/request":
        return "request_job"
    if path.startswith("/jobs/"):
        return "patch_trace" if method == "PATCH" else "update_job"
    if path == "/runners/verify":
        return "verify_runner"
    if path.startswith("/runners"):
        return "unregister_runner" if method == "DELETE" else "register_runner"
    return "other"


class JobWatch:
    """What one job tells the metrics and the log; the base hears nothing."""

    def mask(self, values: Iterable[str]) -> None:
        """`values` (masked variables) must never reach the log while the job runs."""

    def progress(self, inner: Progress | None) -> Progress | None:
        """The executor's progress callback: `inner`'s, heard on the way."""
        return inner

    def trace_accepted(self, sent: int) -> None:
        """GitLab holds the trace's first `sent` bytes."""

    def finished(self, state: str, failure_reason: str | None) -> None:
        """The final update's state and failure reason are decided."""

    def close(self) -> None:
        """The job's task is done with it."""


class EntryWatch(ExecutorObserver):
    """What one `[[runners]]` entry tells the metrics; the base hears nothing."""

    def job(self, job_id: int, token: str, *, adopted: bool = False) -> JobWatch:
        return JobWatch()

    def api_answered(self, method: str, path: str, status: int) -> None:
        """GitLab answered a call with `status`."""


NO_WATCH = EntryWatch()


class RunnerMetrics:
    """The process's metrics and the registry `/metrics` shows."""

    def __init__(self, *, concurrent: int, system_id: str, scrubber: logs.Scrubber | None = None) -> None:
        self.registry = CollectorRegistry()
        self.system_id = system_id
        self.scrubber = scrubber or logs.Scrubber()
        r = self.registry
        Gauge("gitlab_runner_concurrent", "The current value of concurrent setting", registry=r).set(
            concurrent
        )
        self.limit = Gauge("gitlab_runner_limit", "The current value of limit setting", ENTRY, registry=r)
        self.jobs_total = Counter("gitlab_runner_jobs", "Total jobs executed", ENTRY, registry=r)
        self.failed_jobs = Counter(
            "gitlab_runner_failed_jobs", "Total failed jobs", (*ENTRY, "failure_reason"), registry=r
        )
        self.errors = Counter("gitlab_runner_errors", "The number of caught errors.", ("level",), registry=r)
        self.api_statuses = Counter(
            "gitlab_runner_api_request_statuses",
            "The total number of api requests, partitioned by runner, endpoint and status.",
            (*ENTRY, "endpoint", "status"),
            registry=r,
        )
        self.job_duration = Histogram(
            "gitlab_runner_job_duration_seconds",
            "Histogram of job durations",
            ENTRY,
            buckets=JOB_DURATION_BUCKETS,
            registry=r,
        )
        self.reconnects = Counter(
            "kuberunner_stream_reconnects",
            "Streams to a job's pod (log, pods/log, stdin) that dropped and were opened again.",
            (*ENTRY, "stream"),
            registry=r,
        )
        self.stage_start = Histogram(
            "kuberunner_stage_start_seconds",
            "Seconds from a stage being asked for to its start line reaching the pod's PID 1.",
            ENTRY,
            buckets=STAGE_START_BUCKETS,
            registry=r,
        )
        self.trace_bytes = Counter(
            "kuberunner_trace_bytes", "Bytes of job trace GitLab accepted.", ENTRY, registry=r
        )
        self.adopted = Counter(
            "kuberunner_jobs_adopted",
            "Jobs a restarted runner took over from a previous process.",
            ENTRY,
            registry=r,
        )
        self.running: dict[int, JobMetrics] = {}
        r.register(_RunningJobs(self.running))

    def entry(self, runner: RunnerEntry, *, limit: int) -> EntryMetrics:
        entry = EntryMetrics(self, runner)
        self.limit.labels(*entry.labels).set(limit)
        return entry

    def error_counter(self) -> logging.Handler:
        """A handler that counts the warnings and errors logged, by level (`gitlab_runner_errors_total`)."""
        return _ErrorCounter(self.errors)


class EntryMetrics(EntryWatch):
    def __init__(self, metrics: RunnerMetrics, runner: RunnerEntry) -> None:
        self.metrics = metrics
        self.runner = short_token(runner.token)
        self.runner_name = runner.name
        self.labels = (self.runner, metrics.system_id)

    def job(self, job_id: int, token: str, *, adopted: bool = False) -> JobWatch:
        return JobMetrics(self, job_id, token, adopted=adopted)

    def api_answered(self, method: str, path: str, status: int) -> None:
        self.metrics.api_statuses.labels(*self.labels, endpoint_of(method, path), str(status)).inc()

    def stream_reconnected(self, stream: str) -> None:
        self.metrics.reconnects.labels(*self.labels, stream).inc()

    def stage_started(self, stage: str, seconds: float) -> None:
        self.metrics.stage_start.labels(*self.labels).observe(seconds)


class JobMetrics(JobWatch):
    """One job in the `gitlab_runner_jobs` gauge, from its task's start to its end; it also names the
    job in every log line its tasks write (`logs.bind`)."""

    def __init__(self, entry: EntryMetrics, job_id: int, token: str, *, adopted: bool) -> None:
        self.entry = entry
        self.job_id = job_id
        self.stage = ""
        self.executor_stage = "prepare"
        self._started = time.monotonic()
        self._accepted = 0
        self._releases = [entry.metrics.scrubber.hold([token])]
        self.fields = logs.bind(runner=entry.runner, job=job_id)
        metrics = entry.metrics
        if adopted:
            metrics.adopted.labels(*entry.labels).inc()
        else:
            metrics.jobs_total.labels(*entry.labels).inc()
        metrics.running[id(self)] = self

    def mask(self, values: Iterable[str]) -> None:
        self._releases.append(self.entry.metrics.scrubber.hold(values))

    def progress(self, inner: Progress | None) -> Progress | None:
        def heard(event: str, state: JobState) -> None:
            self._progress(event, state)
            if inner is not None:
                inner(event, state)

        return heard

    def _progress(self, event: str, state: JobState) -> None:
        self.fields.pod = state.pod
        if event == "pod":
            self.executor_stage = "wait_for_pod"
        elif event == "stage":
            self.executor_stage, self.stage = "run_stage", state.stage or ""
        elif event in ("stages_done", "finished"):
            self.executor_stage = "finish"

    def trace_accepted(self, sent: int) -> None:
        if sent > self._accepted:
            self.entry.metrics.trace_bytes.labels(*self.entry.labels).inc(sent - self._accepted)
            self._accepted = sent

    def finished(self, state: str, failure_reason: str | None) -> None:
        if state == "failed":
            reason = failure_reason or "unknown_failure"
            self.entry.metrics.failed_jobs.labels(*self.entry.labels, reason).inc()

    def close(self) -> None:
        metrics = self.entry.metrics
        if metrics.running.pop(id(self), None) is None:
            return
        metrics.job_duration.labels(*self.entry.labels).observe(time.monotonic() - self._started)
        for release in self._releases:
            release()
        self._releases.clear()


class _RunningJobs(Collector):
    """`gitlab_runner_jobs`: the running jobs counted by where they are, taken at scrape time."""

    def __init__(self, running: dict[int, JobMetrics]) -> None:
        self._running = running

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gitlab_runner_jobs",
            "The current number of running builds.",
            labels=("runner", "runner_name", "system_id", "state", "stage", "executor_stage"),
        )
        tally = Tally(
            (
                job.entry.runner,
                job.entry.runner_name,
                job.entry.metrics.system_id,
                "running",
                job.stage,
                job.executor_stage,
            )
            for job in self._running.values()
        )
        for labels, count in sorted(tally.items()):
            family.add_metric(labels, count)
        yield family


class _ErrorCounter(logging.Handler):
    def __init__(self, errors: Counter) -> None:
        super().__init__(level=logging.WARNING)
        self._errors = errors

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        self._errors.labels(level).inc()
