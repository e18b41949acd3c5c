"""Services on `kuberunner run` (issue 13): containers of the job's pod, reachable by alias, waited for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cli.execution import Cluster, section_end, section_start, unstamped
from real.cluster import HELPER_IMAGE

from .fake_gitlab import FakeGitLab
from .runner_process import finished, script_job, started_runner
from .test_artifacts import no_exec_cluster, transport

__all__ = ["no_exec_cluster", "transport"]  # fixtures: each transport on the cluster it is meant for

WAIT = "Waiting for services to be up and running"


def service(name: str, alias: str, command: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "alias": alias,
        "entrypoint": ["sh", "-c"],
        "command": [command],
        "variables": [{"key": "GREETING", "value": "pong from $CI_JOB_ID"}],
        "ports": [{"number": port, "protocol": "tcp", "name": "db"}],
    }


async def test_a_service_answers_by_alias_before_the_first_script_line(
    transport: tuple[Cluster, str], gitlab: FakeGitLab, tmp_path: Path
) -> None:
    cluster, kubernetes = transport
    # A stand-in for postgres: it listens only after a second, so the wait is what makes it ready.
    stand_in = 'sleep 1; exec busybox nc -ll -p 25432 -e sh -c "echo $GREETING"'
    job = gitlab.enqueue(
        script_job(
            "busybox nc db 25432 </dev/null",
            "busybox nc postgres-db 25432 </dev/null",
            services=[service(HELPER_IMAGE, "db,postgres-db", stand_in, 25432)],
        )
    )
    runner = await started_runner(gitlab, cluster, tmp_path, kubernetes=kubernetes)
    try:
        await finished(job, runner, within=120)
    finally:
        assert await runner.stop() == 0
    assert job.state == "success", job.text.decode(errors="replace")[-2000:]
    text = unstamped(job.text)
    assert section_start("wait_for_services", WAIT) + section_end("wait_for_services") in text
    pong = f"pong from {job.id}\n".encode()
    assert b"$ busybox nc db 25432 </dev/null\x1b[0;m\n" + pong in text
    assert b"$ busybox nc postgres-db 25432 </dev/null\x1b[0;m\n" + pong in text


async def test_a_service_that_exits_early_shows_its_last_log_lines(
    gitlab: FakeGitLab, gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    broken = "echo starting; echo 'FATAL: invalid configuration' >&2; exit 1"
    job = gitlab.enqueue(
        script_job("echo the script still runs", services=[service(HELPER_IMAGE, "", broken, 25433)])
    )
    runner = await started_runner(
        gitlab, gitlab_cluster, tmp_path, kubernetes="    wait_for_services_timeout = 2\n"
    )
    try:
        await finished(job, runner, within=120)
    finally:
        assert await runner.stop() == 0
    assert job.state == "success", job.text.decode(errors="replace")[-2000:]
    text = unstamped(job.text)
    head = (
        b"\x1b[0;33m*** WARNING: Service svc-0 probably didn't start properly.\x1b[0;m\n"
        b"\x1b[0;33mHealth check error:\x1b[0;m\n"
        + f"\x1b[0;33mservice {HELPER_IMAGE} did not accept connections on 25433/tcp\x1b[0;m\n".encode()
        + b"\x1b[0;33mService container logs:\x1b[0;m\n"
    )
    tail = b"\x1b[0;33m*********\x1b[0;m\n"
    # The runtime reads stdout and stderr through separate pipes, so a real kubelet's log may hold
    # the stderr line first (seen on the real cluster); both lines, and nothing else, either way.
    logged = (b"starting\nFATAL: invalid configuration\n", b"FATAL: invalid configuration\nstarting\n")
    assert any(head + lines + tail in text for lines in logged), text[-2000:]
    assert b"\nthe script still runs\n" in text
