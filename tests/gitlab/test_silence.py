"""A connection to GitLab that goes silent is left within 10 s, whichever call waits on it (issue 17).

Silence comes in two kinds, and each test says which one it makes:

- a dead path: every packet of the connection dropped (an expired NAT entry, a vanished host),
  made with the packet filter (`blackhole.dropped`). TCP keepalive and TCP_USER_TIMEOUT on the
  runner's sockets catch it. It is the only silence a long poll can be judged by: Workhorse holds a
  long poll without a byte for up to its apiCiLongPollingDuration, here 50 s as on GitLab.com.
- a middlebox that ACKs and swallows (the fault proxy's `silence_all`): nothing at TCP level shows
  it, so PATCHes and PUTs get a short first try (`FIRST_TRY_TIMEOUT`) and are sent again on a new
  connection.

Each job must still end as it should, with its trace exact and its checksum matching.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from cli.execution import Cluster
from kube.socket_options import KeepaliveOptions, options_of_own_socket

from kuberunner.faultproxy import FaultProxy
from kuberunner.gitlab.client import FIRST_TRY_TIMEOUT, KEEPALIVE, GitLabClient, Timeouts

from .blackhole import Address, dropped
from .fake_gitlab import FakeGitLab, FakeJob, Fault
from .runner_process import RunnerProcess, finished, script_job, started_runner, until, write_config
from .test_gitlab_faults import TICKS, assert_whole

WORKHORSE_HOLD = 50.0
NOTICED_WITHIN = 10.0
LONG_TICKS = "for i in $(seq 1 40); do echo line $i; sleep 0.4; done"
"""About 16 s of output: the job still runs when a stuck PATCH is noticed, so the resend is the
uploader's own, not the end-of-job flush."""
LONG_EXPECTED = b"".join(b"line %d\n" % i for i in range(1, 41))


def assert_long_whole(job: FakeJob) -> None:
    assert job.state == "success", job.text
    assert job.text.count(LONG_EXPECTED) == 1, job.text
    assert job.checksum_ok


def server_of(gitlab: FakeGitLab) -> Address:
    host, port = gitlab.base_url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


async def next_arrival(
    gitlab: FakeGitLab, method: str, path_end: str, *, after: float, not_on: Address
) -> float:
    """Seconds from `after` until a `method` request to `…path_end` came on another connection."""

    def found() -> float | None:
        return next(
            (
                at - after
                for at, m, path, peer in gitlab.arrivals
                if at > after and m == method and path.endswith(path_end) and peer != not_on
            ),
            None,
        )

    await until(lambda: found() is not None, within=120, what=f"{method} …{path_end} on a new connection")
    seconds = found()
    assert seconds is not None
    print(f"\n{method} …{path_end}: silence left after {seconds:.1f} s")
    return seconds


# -- a dead path: keepalive and TCP_USER_TIMEOUT ---------------------------------------------------


@asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """`app` on a loopback port, as a stand-in GitLab: its base URL."""
    site = web.AppRunner(app)
    await site.setup()
    tcp = web.TCPSite(site, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await site.cleanup()


async def test_a_long_poll_on_a_dead_path_is_left_and_the_job_taken_within_10_s(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    gitlab.long_poll = WORKHORSE_HOLD
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await until(lambda: gitlab.held_polls, within=60, what="a long poll held")
        held = gitlab.held_polls[-1]
        with dropped(held, server_of(gitlab)):
            cut = time.monotonic()
            # The held poll is released by this (its 204 goes into the dead path), as Workhorse does.
            job = gitlab.enqueue(script_job(TICKS))
            noticed = await next_arrival(gitlab, "POST", "/jobs/request", after=cut, not_on=held)
            await finished(job, runner)
    finally:
        assert await runner.stop() == 0
    assert noticed < NOTICED_WITHIN
    assert "requesting a job: " in runner.log() and "; retrying in" in runner.log()
    assert_whole(job)


async def test_a_trace_patch_on_a_dead_path_is_sent_again_within_10_s(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    gitlab.trace_interval = 0.3
    job = gitlab.enqueue(script_job(LONG_TICKS))
    hold = asyncio.Event()
    fault = gitlab.inject(Fault("PATCH", "/trace", hold=hold, times=1))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await asyncio.wait_for(fault.arrived.wait(), timeout=60)
        assert fault.peer is not None
        with dropped(fault.peer, server_of(gitlab)):
            cut = time.monotonic()
            hold.set()  # GitLab appended the bytes; its 202 goes into the dead path
            noticed = await next_arrival(gitlab, "PATCH", "/trace", after=cut, not_on=fault.peer)
            await finished(job, runner)
    finally:
        hold.set()
        assert await runner.stop() == 0
    assert noticed < NOTICED_WITHIN
    assert any(status == 416 for _, status in job.patches)  # the resent chunk was already there
    assert "sending the trace: " in runner.log() and "no reply within" not in runner.log()
    assert_long_whole(job)


async def test_a_final_put_on_a_dead_path_is_sent_again_within_10_s(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    job = gitlab.enqueue(script_job(TICKS))
    hold = asyncio.Event()
    fault = gitlab.inject(Fault("PUT", f"/jobs/{job.id}", hold=hold, times=1))
    runner = await started_runner(gitlab, gitlab_cluster, tmp_path)
    try:
        await asyncio.wait_for(fault.arrived.wait(), timeout=60)
        assert fault.peer is not None
        with dropped(fault.peer, server_of(gitlab)):
            cut = time.monotonic()
            hold.set()
            noticed = await next_arrival(gitlab, "PUT", f"/jobs/{job.id}", after=cut, not_on=fault.peer)
            await finished(job, runner)
    finally:
        hold.set()
        assert await runner.stop() == 0
    assert noticed < NOTICED_WITHIN
    assert_whole(job)


# -- a middlebox that ACKs and swallows: the short first try ----------------------------------------


async def _through_silenced_proxy(gitlab: FakeGitLab, cluster: Cluster, tmp_path: Path, method: str) -> None:
    gitlab.trace_interval = 0.3
    # A PATCH must be noticed while the job still runs; a final PUT comes after it anyway.
    long = method == "PATCH"
    job = gitlab.enqueue(script_job(LONG_TICKS if long else TICKS))
    host, port = server_of(gitlab)
    path_end = "/trace" if method == "PATCH" else f"/jobs/{job.id}"
    async with FaultProxy(target_host=host, target_port=port) as proxy:
        registered = gitlab.add_runner()
        config = write_config(tmp_path / "config.toml", url=f"http://{proxy.address}", token=registered.token)
        hold = asyncio.Event()
        fault = gitlab.inject(Fault(method, path_end, hold=hold, times=1))
        runner = RunnerProcess(cluster, config)
        try:
            await asyncio.wait_for(fault.arrived.wait(), timeout=60)
            assert fault.peer is not None
            assert proxy.silence_all() >= 1
            cut = time.monotonic()
            hold.set()  # GitLab answers; the proxy swallows the answer and keeps both sockets open
            noticed = await next_arrival(gitlab, method, path_end, after=cut, not_on=fault.peer)
            await finished(job, runner)
        finally:
            hold.set()
            assert await runner.stop() == 0
    assert noticed < NOTICED_WITHIN
    what = "sending the trace" if method == "PATCH" else "updating the job"
    assert f"{what}: no reply within {FIRST_TRY_TIMEOUT:g} s; retrying" in runner.log()
    (assert_long_whole if long else assert_whole)(job)


async def test_a_trace_patch_through_a_silent_middlebox_is_sent_again_within_10_s(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    await _through_silenced_proxy(gitlab, gitlab_cluster, tmp_path, "PATCH")


async def test_a_final_put_through_a_silent_middlebox_is_sent_again_within_10_s(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    await _through_silenced_proxy(gitlab, gitlab_cluster, tmp_path, "PUT")


# -- the settings behind it -------------------------------------------------------------------------


async def test_a_try_after_an_unanswered_one_never_takes_a_pooled_connection() -> None:
    """Two connections idle in the pool, then both go silent (as behind one dead middlebox): the
    first try is lost on one of them; the second must not be lost on the other."""
    silent_peers: set[Address] = set()
    arrivals: list[Address] = []
    never = asyncio.Event()

    async def trace(request: web.Request) -> web.Response:
        assert request.transport is not None
        peer = request.transport.get_extra_info("peername")[:2]
        arrivals.append(peer)
        if peer in silent_peers:
            await never.wait()
        return web.Response(status=202, headers={"Range": "0-1"})

    app = web.Application()
    app.router.add_patch("/api/v4/jobs/1/trace", trace)
    async with served(app) as url:
        try:
            timeouts = Timeouts(call=30, first_try=1)
            async with GitLabClient(url, timeouts=timeouts) as api:

                async def patch() -> int:
                    reply = await api.patch_trace(job_id=1, job_token="t", start=0, data=b"x")
                    return reply.status

                assert list(await asyncio.gather(patch(), patch())) == [202, 202]  # two connections, now idle
                silent_peers.update(arrivals)
                assert len(silent_peers) == 2
                started = time.monotonic()
                assert await patch() == 202
                took = time.monotonic() - started
        finally:
            never.set()
    lost, answered = arrivals[2:]
    assert lost in silent_peers and answered not in silent_peers
    assert took < 10  # one short first try, not a second one lost on the other pooled connection


async def test_a_gitlab_slower_than_the_first_try_costs_one_more_try_not_the_call() -> None:
    """The short first try must not fail a GitLab that is slow but alive: the next try waits longer."""
    arrivals: list[float] = []

    async def slow(request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        await asyncio.sleep(1.5)  # the server's own slowness: what is under test
        return web.Response(status=200, headers={"Job-Status": "running"})

    app = web.Application()
    app.router.add_put("/api/v4/jobs/1", slow)
    async with served(app) as url:
        timeouts = Timeouts(call=30, first_try=1)
        async with GitLabClient(url, timeouts=timeouts) as api:
            reply = await api.update_job(job_id=1, job_token="t", state="running")
    assert reply.status == 200 and reply.job_status == "running"
    assert len(arrivals) == 2  # 1 s was too short; 2 s was enough


def test_patch_and_put_tries_double_from_the_short_first_one_up_to_the_call_bound() -> None:
    assert [Timeouts().attempt_bound(n) for n in range(1, 6)] == [6, 12, 24, 30, 30]
    assert Timeouts(call=1).attempt_bound(1) == 1  # a configured gitlab_call_timeout below it wins


async def test_every_socket_to_gitlab_reads_back_short_keepalive_and_user_timeout() -> None:
    seen: dict[str, KeepaliveOptions] = {}

    async def answer(request: web.Request) -> web.Response:
        assert request.transport is not None
        seen[request.method] = options_of_own_socket(request.transport.get_extra_info("peername")[:2])
        return web.Response(status=204 if request.method == "POST" else 200)

    app = web.Application()
    app.router.add_post("/api/v4/jobs/request", answer)
    app.router.add_patch("/api/v4/jobs/1/trace", answer)
    app.router.add_put("/api/v4/jobs/1", answer)
    async with served(app) as url:
        # A fresh client per call: each one's socket is a new one, made by the client's factory.
        for call in ("request", "patch", "put"):
            async with GitLabClient(url) as api:
                if call == "request":
                    await api.request_job(token="t", system_id="s", last_update=None)
                elif call == "patch":
                    await api.patch_trace(job_id=1, job_token="t", start=0, data=b"x")
                else:
                    await api.update_job(job_id=1, job_token="t", state="running")
    expected = KeepaliveOptions(
        1, KEEPALIVE.idle, KEEPALIVE.interval, KEEPALIVE.count, KEEPALIVE.user_timeout_ms
    )
    assert seen == dict.fromkeys(("POST", "PATCH", "PUT"), expected)
    # Silence on a dead path is left within 10 s, with room for the next request.
    assert KEEPALIVE.user_timeout_ms <= 5_000 and KEEPALIVE.idle + KEEPALIVE.interval * KEEPALIVE.count <= 5
