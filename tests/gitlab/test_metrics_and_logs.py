"""`kuberunner run`'s /metrics, /health and log, as Prometheus and a log shipper see them (issue 15)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from cli.execution import BIN, Cluster
from cli.faults import server_port
from prometheus_client.parser import text_string_to_metric_families

from kuberunner.faultproxy import FaultProxy, rewrite_kubeconfig
from kuberunner.runner.metrics import short_token
from kuberunner.runner.metrics_server import MAX_CONNECTIONS

from .fake_gitlab import FakeGitLab
from .runner_process import RunnerProcess, clean_env, finished, script_job, until, write_config

LISTEN = 'listen_address = "127.0.0.1:0"\n'
LISTENING = re.compile(r"listening on (127\.0\.0\.1:\d+) for /metrics")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def config_with(path: Path, gitlab: FakeGitLab, token: str, *, top: str, kubernetes: str = "") -> Path:
    """write_config, with `top` (global keys) before the [[runners]] table."""
    config = write_config(path, url=gitlab.base_url, token=token, kubernetes=kubernetes)
    config.write_text(top + config.read_text())
    return config


async def metrics_address(runner: RunnerProcess) -> str:
    await until(lambda: LISTENING.search(runner.log()) is not None, within=60, what="the metrics server")
    found = LISTENING.search(runner.log())
    assert found is not None
    return found.group(1)


async def scrape(address: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(f"http://{address}/metrics") as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await reply.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (found, pairs), value in samples.items() if found == name and wanted <= pairs)


def polls(gitlab: FakeGitLab) -> int:
    return sum(1 for _, _, path, _ in gitlab.requests if path == "/api/v4/jobs/request")


@asynccontextmanager
async def running(runner: RunnerProcess) -> AsyncIterator[RunnerProcess]:
    try:
        yield runner
    finally:
        assert await runner.stop() == 0, runner.log()[-3000:]


async def test_metrics_follow_jobs_that_run_and_fail(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    registered = gitlab.add_runner()
    config = config_with(tmp_path / "config.toml", gitlab, registered.token, top=LISTEN)
    long = gitlab.enqueue(script_job("echo started", "sleep 4", "echo done"))
    async with running(RunnerProcess(gitlab_cluster, config)) as runner:
        address = await metrics_address(runner)
        await until(lambda: b"started" in long.text, within=120, what="the first job's output")
        during = await scrape(address)
        failing = gitlab.enqueue(script_job("echo failing", "exit 3"))
        await finished(long, runner, within=120)
        await finished(failing, runner, within=120)
        polls_before = polls(gitlab)
        after = await scrape(address)
        polls_after = polls(gitlab)
        async with aiohttp.ClientSession() as session, session.get(f"http://{address}/health") as reply:
            health = (reply.status, await reply.json())

    me = {"runner": short_token(registered.token)}
    assert total(during, "gitlab_runner_jobs", state="running", **me) == 1
    assert total(during, "gitlab_runner_jobs", stage="step_script", executor_stage="run_stage") == 1
    assert total(after, "gitlab_runner_jobs") == 0
    assert (long.state, failing.state, failing.failure_reason) == ("success", "failed", "script_failure")
    assert total(after, "gitlab_runner_jobs_total", **me) == 2
    assert total(after, "gitlab_runner_failed_jobs_total", failure_reason="script_failure", **me) == 1
    assert total(after, "gitlab_runner_failed_jobs_total") == 1
    assert total(after, "gitlab_runner_job_duration_seconds_count", **me) == 2
    assert total(after, "gitlab_runner_concurrent") == 4
    assert total(after, "gitlab_runner_limit", **me) == 0
    # Every byte GitLab accepted is counted once: the fake's stored traces are exactly those bytes.
    assert total(after, "kuberunner_trace_bytes_total", **me) == len(long.text) + len(failing.text)
    # get_sources and step_script of each job, at least (after_script too when there is one).
    assert total(after, "kuberunner_stage_start_seconds_count", **me) >= 4
    # One poll at a time: at most one the fake has answered that the runner has not yet read.
    counted = total(after, "gitlab_runner_api_request_statuses_total", endpoint="request_job")
    assert polls_before - 1 <= counted <= polls_after
    assert total(after, "gitlab_runner_api_request_statuses_total", endpoint="request_job", status="201") == 2
    assert total(after, "gitlab_runner_api_request_statuses_total", endpoint="update_job", status="200") >= 2
    assert total(after, "gitlab_runner_api_request_statuses_total", endpoint="patch_trace", status="202") >= 2
    assert health == (200, {"status": "ok", "running_jobs": 0})


@pytest.mark.parametrize(("transport", "stream"), [("file", "log"), ("kubelet", "pods/log")])
async def test_a_dropped_log_stream_is_counted_as_a_reconnect(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path, transport: str, stream: str
) -> None:
    registered = gitlab.add_runner()
    kubernetes = f'    log_transport = "{transport}"\n'
    config = config_with(
        tmp_path / "config.toml", gitlab, registered.token, top=LISTEN, kubernetes=kubernetes
    )
    job = gitlab.enqueue(script_job("for i in $(seq 1 24); do echo line $i; sleep 0.25; done"))
    async with FaultProxy(
        target_host="127.0.0.1", target_port=server_port(gitlab_cluster.kubeconfig)
    ) as proxy:
        kubeconfig = tmp_path / "proxied-kubeconfig"
        rewrite_kubeconfig(gitlab_cluster.kubeconfig, kubeconfig, server=proxy.address)
        proxied = Cluster(kubeconfig, gitlab_cluster.state_dir, gitlab_cluster.process)
        async with running(RunnerProcess(proxied, config)) as runner:
            address = await metrics_address(runner)
            before = await scrape(address)
            await until(lambda: b"line 3\n" in job.text, within=120, what="line 3")
            assert proxy.reset_all() >= 1
            await finished(job, runner, within=120)
            after = await scrape(address)
    assert job.state == "success", job.text
    lines = re.findall(rb"^line (\d+)$", job.text, flags=re.M)
    assert [int(n) for n in lines] == list(range(1, 25))  # nothing lost or repeated
    assert total(before, "kuberunner_stream_reconnects_total") == 0
    assert (
        total(
            after, "kuberunner_stream_reconnects_total", stream=stream, runner=short_token(registered.token)
        )
        >= 1
    )


async def test_a_job_taken_over_after_a_restart_counts_as_adopted_not_as_new(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    registered = gitlab.add_runner()
    config = config_with(tmp_path / "config.toml", gitlab, registered.token, top=LISTEN)
    job = gitlab.enqueue(script_job("for i in $(seq 1 16); do echo line $i; sleep 0.25; done"))
    first = RunnerProcess(gitlab_cluster, config)
    try:
        await until(lambda: b"line 2\n" in job.text, within=120, what="line 2")
    finally:
        first.process.kill()
        await first.stop()
    async with running(RunnerProcess(gitlab_cluster, config)) as second:
        await finished(job, second, within=120)
        samples = await scrape(await metrics_address(second))
    assert job.state == "success", second.log()[-3000:]
    me = {"runner": short_token(registered.token)}
    assert total(samples, "kuberunner_jobs_adopted_total", **me) == 1
    assert total(samples, "gitlab_runner_jobs_total", **me) == 0
    assert total(samples, "gitlab_runner_job_duration_seconds_count", **me) == 1


async def test_calls_gitlab_never_answered_are_counted_as_status_minus_100(
    gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    with socket.socket() as closed:  # a port nobody listens on: every connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = write_config(tmp_path / "config.toml", url=f"http://127.0.0.1:{port}", token="glrt-refused0123")
    config.write_text(LISTEN + config.read_text())
    async with running(RunnerProcess(gitlab_cluster, config)) as runner:
        address = await metrics_address(runner)
        unanswered = 0.0
        for _ in range(120):
            samples = await scrape(address)
            unanswered = total(samples, "gitlab_runner_api_request_statuses_total", status="-100")
            if unanswered:
                break
            await asyncio.sleep(0.5)
    assert unanswered >= 1, runner.log()[-3000:]
    labels = {"endpoint": "request_job", "runner": "refused01", "status": "-100"}
    assert total(samples, "gitlab_runner_api_request_statuses_total", **labels) == unanswered


SECRET = "s3cr3t-Value-91"


async def test_json_log_lines_name_the_job_and_never_show_secrets(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    registered = gitlab.add_runner()
    top = 'log_format = "json"\nlog_level = "debug"\n' + LISTEN
    config = config_with(tmp_path / "config.toml", gitlab, registered.token, top=top)
    variables = [{"key": "SECRET", "value": SECRET, "public": False, "masked": True}]
    # The job's name holds the masked value, and the runner logs the name: only the scrubber stands
    # between the two.
    job = gitlab.enqueue(script_job("echo $SECRET", name=f"build-{SECRET}", variables=variables))
    async with running(RunnerProcess(gitlab_cluster, config)) as runner:
        await finished(job, runner, within=120)
        samples = await scrape(await metrics_address(runner))
        logged = [json.loads(line)["level"] for line in runner.log().splitlines()]
    assert job.state == "success"
    # gitlab_runner_errors_total counts the warnings and errors the log shows, by level.
    assert "warning" in logged  # at least the start-up lines ("running 1 runner(s)", "listening on")
    for level in ("warning", "error"):
        assert total(samples, "gitlab_runner_errors_total", level=level) == logged.count(level), level
    text = runner.log()
    events = [json.loads(line) for line in text.splitlines()]  # every line is one JSON event
    assert all({"level", "msg", "time"} <= event.keys() for event in events)
    about_job = [event for event in events if event.get("job") == job.id]
    assert about_job, text[-3000:]
    assert all(event["runner"] == short_token(registered.token) for event in about_job)
    pod = re.search(rb"Running on (\S+) via", job.text)
    assert pod is not None, job.text
    assert any(event.get("pod") == pod.group(1).decode() for event in about_job), text[-3000:]
    received = next(event for event in about_job if event["msg"].startswith(f"job {job.id}: received"))
    assert received["msg"] == f"job {job.id}: received (build-[MASKED])"
    assert received["level"] == "info"
    assert SECRET not in text
    assert registered.token not in text
    assert job.token not in text


async def test_text_log_lines_carry_the_job_fields_and_the_flag_beats_config(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    registered = gitlab.add_runner()
    config = config_with(tmp_path / "config.toml", gitlab, registered.token, top='log_format = "json"\n')
    job = gitlab.enqueue(script_job("echo hi"))
    log = (tmp_path / "runner.log").open("wb")
    flags = ("--log-format", "text", "--log-level", "info")
    process = await asyncio.create_subprocess_exec(
        *(str(BIN), *flags, "run", "-c", str(config), "--kubeconfig", str(gitlab_cluster.kubeconfig)),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=clean_env(),
    )
    try:
        await asyncio.wait_for(job.finished.wait(), timeout=120)
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0
        log.close()
    text = (tmp_path / "runner.log").read_text()
    assert job.state == "success", text
    line = next(line for line in text.splitlines() if f"job {job.id}: received" in line)
    assert (
        line
        == f"kuberunner: job {job.id}: received (job)  job={job.id} runner={short_token(registered.token)}"
    )
    assert not any(line.startswith("{") for line in text.splitlines())


def run_once(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), "run", "-c", str(config)], capture_output=True, text=True, env=clean_env(), timeout=60
    )


def unreachable_config(path: Path, top: str) -> Path:
    config = write_config(path, url="http://127.0.0.1:9", token="glrt-not-used")
    config.write_text(top + config.read_text())
    return config


def test_bad_global_keys_are_one_line_each(tmp_path: Path) -> None:
    cases = {
        'log_format = "xml"\n': "key 'log_format': expected 'text' or 'json', not 'xml'",
        'log_level = "loud"\n': "key 'log_level': expected one of debug, info, warn, error, fatal, panic, "
        "not 'loud'",
        'listen_address = "localhost:http:x"\n': "key 'listen_address': expected [host]:port",
        'listen_address = "127.0.0.1:70000"\n': "key 'listen_address': port 70000 is above 65535",
        "log_level = 3\n": "key 'log_level': expected a string",
    }
    for top, message in cases.items():
        config = unreachable_config(tmp_path / "config.toml", top)
        done = run_once(config)
        assert done.returncode == 2, (top, done.stderr)
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1, (top, done.stderr)
        assert lines[0].startswith(f"kuberunner: error: {config}: {message}"), (top, lines)


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = unreachable_config(tmp_path / "config.toml", f'listen_address = "127.0.0.1:{port}"\n')
        done = run_once(config)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"kuberunner: error: {config}: key 'listen_address': cannot listen on 127.0.0.1:{port}: "
        "Address already in use"
    ]


async def ended(reader: asyncio.StreamReader) -> bool:
    """The server closed this connection (those it closed already have, so 5 s is only a bound)."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        return await asyncio.wait_for(reader.read(1), timeout=5) == b""
    return False


async def test_the_metrics_server_shrugs_off_hostile_requests(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    registered = gitlab.add_runner()
    config = config_with(tmp_path / "config.toml", gitlab, registered.token, top=LISTEN)
    async with running(RunnerProcess(gitlab_cluster, config)) as runner:
        address = await metrics_address(runner)
        host, port = address.rsplit(":", 1)
        answers = []
        for request in (
            # Each is under aiohttp's own limits (8190 bytes, 128 headers) and over ours.
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n",
            b"GET /" + b"a" * 4000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100)) + b"\r\n",
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" + b"a" * 65536,
            b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request)
            with contextlib.suppress(ConnectionError):  # the server may close first: fine
                await writer.drain()
            status = await asyncio.wait_for(reader.read(100), timeout=30)
            answers.append(status.split(b"\r\n", 1)[0])
            writer.close()
        # Connections that say nothing at all neither keep a scraper out nor pile up in the runner.
        silent = [await asyncio.open_connection(host, int(port)) for _ in range(40)]
        samples = await scrape(address)
        # The server sees connections a batch at a time, so the bound holds from the next one on.
        await scrape(address)
        closed = sum(await asyncio.gather(*(ended(reader) for reader, _ in silent)))
        for _, writer in silent:
            writer.close()
    assert [answer.split(b" ", 2)[1] for answer in answers[:3]] == [b"400"] * 3, answers
    assert answers[3].startswith(b"HTTP/1.1 405"), answers  # only GET; the body is never read
    assert answers[4].startswith(b"HTTP/1.1 404"), answers
    assert total(samples, "gitlab_runner_concurrent") == 4
    assert closed >= 40 - MAX_CONNECTIONS + 1, closed
