"""The pure parts of `run`'s metrics and log: addresses, endpoint names, the scrubber, the line formats."""

from __future__ import annotations

import contextvars
import io
import json
import logging

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kuberunner.config import RunnerEntry
from kuberunner.runner import logs
from kuberunner.runner.metrics import RunnerMetrics, endpoint_of, short_token
from kuberunner.runner.metrics_server import ListenAddress, parse_listen_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":9252", ListenAddress(None, 9252)),
        ("127.0.0.1:9300", ListenAddress("127.0.0.1", 9300)),
        ("localhost", ListenAddress("localhost", 9252)),
        ("[::1]:0", ListenAddress("::1", 0)),
        ("[2001:db8::1]", ListenAddress("2001:db8::1", 9252)),
    ],
)
def test_listen_addresses_as_gitlab_runner_reads_them(text: str, expected: ListenAddress) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize("text", ["::1:9252", "host:http", "host:99999", "a:1:2", "[::1", "host:-1"])
def test_bad_listen_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen_address(text)


@pytest.mark.parametrize(
    ("token", "short"),
    [
        ("glrt-0123456789abcdef", "012345678"),
        ("glrtr-0123456789abcdef", "012345678"),
        ("GR1348941abcdefghijklmnop", "GR1348941abcdefgh"),
        ("abcdefghijkl", "abcdefgh"),
        ("abc", "abc"),
    ],
)
def test_runner_labels_are_gitlab_runners_short_tokens(token: str, short: str) -> None:
    assert short_token(token) == short


def test_endpoint_names_are_gitlab_runners() -> None:
    assert endpoint_of("POST", "/jobs/request") == "request_job"
    assert endpoint_of("PATCH", "/jobs/7/trace") == "patch_trace"
    assert endpoint_of("PUT", "/jobs/7") == "update_job"
    assert endpoint_of("POST", "/runners/verify") == "verify_runner"
    assert endpoint_of("DELETE", "/runners/managers") == "unregister_runner"


def test_the_scrubber_cuts_held_secrets_until_released() -> None:
    scrub = logs.Scrubber()
    release = scrub.hold(["secret", "secret-longer", "abc"])
    assert scrub("a secret-longer secret abc") == "a [MASKED] [MASKED] abc"  # too short to mask: kept
    release()
    assert scrub("a secret") == "a secret"


def _formatted(fmt: str, record: logging.LogRecord, scrub: logs.Scrubber) -> str:
    formatter = logs.JsonFormatter(scrub) if fmt == "json" else logs.TextFormatter(scrub)

    def inside_a_job() -> str:
        fields = logs.bind(runner="glrt-abc", job=42)
        fields.pod = "runner-pod-1"
        return formatter.format(record)

    return contextvars.copy_context().run(inside_a_job)


def _record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("kuberunner.runner", level, __file__, 1, message, None, None)


def test_json_lines_carry_gitlab_runners_keys() -> None:
    scrub = logs.Scrubber()
    scrub.hold(["hunter2-secret"])
    line = _formatted("json", _record("job 42: got hunter2-secret\nsecond line"), scrub)
    event = json.loads(line)
    assert "\n" not in line
    assert event.pop("time").endswith("Z")
    assert event == {
        "level": "warning",
        "msg": "job 42: got [MASKED]\nsecond line",
        "job": 42,
        "pod": "runner-pod-1",
        "runner": "glrt-abc",
    }


def test_text_lines_keep_the_message_first_and_fields_after() -> None:
    line = _formatted("text", _record("job 42: two\nlines"), logs.Scrubber())
    assert line == "kuberunner: job 42: two lines  job=42 pod=runner-pod-1 runner=glrt-abc"
    outside = logs.TextFormatter(logs.Scrubber())
    assert contextvars.Context().run(outside.format, _record("plain")) == "kuberunner: plain"


def test_configure_sets_the_level_and_adjust_only_what_flags_left_open() -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        stream = io.StringIO()
        logs.configure(level="error", fmt="text", stream=stream)
        logs.adjust(level="debug", fmt="json")
        logging.getLogger("kuberunner.test").debug("visible")
        assert json.loads(stream.getvalue())["msg"] == "visible"
        logs.adjust(level="panic", fmt=None)
        logging.getLogger("kuberunner.test").critical("hidden")
        assert stream.getvalue().count("\n") == 1
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


def _families(metrics: RunnerMetrics) -> dict[tuple[str, str], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, json.dumps(sample.labels, sort_keys=True)): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_each_runner_has_its_own_registry_and_jobs_are_counted_once() -> None:
    first = RunnerMetrics(concurrent=2, system_id="s_1")
    second = RunnerMetrics(concurrent=3, system_id="s_2")
    entry = first.entry(RunnerEntry(name="r", token="glrt-0123456789"), limit=5)

    def one_job() -> None:
        job = entry.job(7, "job-token-7")
        job.trace_accepted(100)
        job.trace_accepted(100)  # the same size again: nothing new
        job.trace_accepted(250)
        job.finished("failed", None)
        job.close()
        job.close()  # a second close counts nothing

    contextvars.copy_context().run(one_job)
    samples = _families(first)
    labels = json.dumps({"runner": "012345678", "system_id": "s_1"}, sort_keys=True)
    failed = json.dumps(
        {"failure_reason": "unknown_failure", "runner": "012345678", "system_id": "s_1"}, sort_keys=True
    )
    assert samples[("gitlab_runner_jobs_total", labels)] == 1
    assert samples[("gitlab_runner_failed_jobs_total", failed)] == 1
    assert samples[("kuberunner_trace_bytes_total", labels)] == 250
    assert samples[("gitlab_runner_job_duration_seconds_count", labels)] == 1
    assert samples[("gitlab_runner_limit", labels)] == 5
    assert samples[("gitlab_runner_concurrent", "{}")] == 2
    assert not any(name == "gitlab_runner_jobs" for name, _ in samples)  # no job runs now
    assert not any("jobs_total" in name for name, _ in _families(second))
    assert REGISTRY.get_sample_value("gitlab_runner_concurrent") is None
