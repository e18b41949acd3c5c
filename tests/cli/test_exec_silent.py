"""Connections that go silent (half-open: open, every byte dropped) are noticed within seconds (issue 17),
and a certificate the configured CA did not sign fails at once (issue 10).

The fault proxy's silence keeps both sockets open and swallows everything, as an expired NAT entry
or a vanished node does; nothing ever closes, so only the runner's own liveness checks can notice.
Each test silences every open connection at one moment and measures from it.
"""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import pytest
from real.cluster import REAL_KUBECONFIG
from ruamel.yaml import YAML

from kuberunner.cluster import tls

from .execution import BIN, Cluster, Running, Target, pipeline, section_end, section_start, unstamped
from .faults import ProxyThread

NOTICED_WITHIN = 10.0
STEP_SCRIPT = 'Executing "step_script" stage of the job script'
COUNTING = 'for i in $(seq 1 8); do echo "line $i"; sleep 1; done'


@dataclass(frozen=True)
class Proxied:
    target: Target
    """The target as the runner sees it: through the proxy."""
    direct: Cluster
    """The same cluster without the proxy, for acting on it while the runner's connections are silent."""
    proxy: ProxyThread


@pytest.fixture
def through_proxy(target: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """Each log transport's target, seen through a fault proxy."""
    out = tmp_path_factory.mktemp("silent") / "kubeconfig"
    thread = ProxyThread(target.cluster.kubeconfig, out)
    cluster = Cluster(out, target.cluster.state_dir, target.cluster.process)
    yield Proxied(Target(cluster, target.args), target.cluster, thread)
    thread.close()


def echo(command: str) -> bytes:
    return b"\x1b[32;1m$ " + command.encode() + b"\x1b[0;m\n"


def normalised(trace: bytes) -> bytes:
    """The trace with its pod name fixed and the pod-start progress lines (timing) left out."""
    trace = re.sub(rb"kuberunner-job-[0-9a-f]{8}", b"POD", unstamped(trace))
    return re.sub(rb"Waiting for pod default/POD to be running, status is [^\n]*\n", b"", trace)


def header() -> bytes:
    return (
        b"Running with kuberunner 0.1.0\n"
        b"Using Kubernetes namespace: default\n"
        b"Using attach strategy to execute scripts...\n"
        b"Running on POD via kuberunner...\n"
        + section_start("get_sources", "Preparing the project directory")
        + section_end("get_sources")
        + section_start("step_script", STEP_SCRIPT)
    )


def silence_now(proxy: ProxyThread) -> float:
    """Silences every open connection; returns when, on the monotonic clock (the loop's clock)."""

    def silence() -> tuple[int, float]:
        return proxy.proxy.silence_all(), asyncio.get_running_loop().time()

    count, at = proxy.call(silence)
    assert count > 0
    return at


def silence_when_opened(proxy: ProxyThread, total: int) -> Future[float]:
    """Silences every open connection as soon as the `total`-th connection is accepted."""
    when: Future[float] = Future()

    async def wait_then_silence() -> None:
        await proxy.proxy.until_connections(total)
        proxy.proxy.silence_all()
        when.set_result(asyncio.get_running_loop().time())

    tasks: list[asyncio.Task[None]] = []
    proxy.call(lambda: tasks.append(asyncio.get_running_loop().create_task(wait_then_silence())))
    return when


def until_trace_grows(job: Running, past: int, *, within: float = 60) -> float:
    """The monotonic time at which the trace first holds more than `past` bytes."""
    deadline = time.monotonic() + within
    while len(job.trace()) <= past:
        assert time.monotonic() < deadline and job.process.poll() is None, job.trace()[-2000:]
        time.sleep(0.02)
    return time.monotonic()


def test_silence_while_the_pod_starts(proxied: tuple[Cluster, ProxyThread], tmp_path: Path) -> None:
    cluster, proxy = proxied
    # The runner's REST calls share connection 1; its pod watch is connection 2.
    silenced = silence_when_opened(proxy, 2)
    job = Running(cluster, tmp_path, pipeline(script=["echo hello"]))
    at = silenced.result(timeout=60)
    assert b"Running on" not in job.trace()
    job.wait_for(b"Running on", within=NOTICED_WITHIN + 5)
    noticed = time.monotonic() - at
    done = job.finish()
    print(f"silent while the pod starts: pod seen running {noticed:.2f} s after the silence")
    assert noticed < NOTICED_WITHIN
    assert done.status == 0, done.trace[-2000:]
    assert (
        normalised(done.trace)
        == header() + echo("echo hello") + b"hello\n" + section_end("step_script") + b"Job succeeded\n"
    )


def test_silence_mid_stage_output_flows_again(through_proxy: Proxied, tmp_path: Path) -> None:
    target, proxy = through_proxy.target, through_proxy.proxy
    job = Running(target.cluster, tmp_path, pipeline(script=[COUNTING, "echo done"]), *target.args)
    job.wait_for(b"line 2\n")
    at = silence_now(proxy)
    flowing = until_trace_grows(job, len(job.trace())) - at
    done = job.finish()
    print(f"silent mid-stage ({target.transport}): output flows again {flowing:.2f} s after the silence")
    assert flowing < NOTICED_WITHIN
    assert done.status == 0, done.trace[-2000:]
    lines = b"".join(f"line {i}\n".encode() for i in range(1, 9))
    assert (
        normalised(done.trace)
        == header()
        + echo(COUNTING)
        + lines
        + echo("echo done")
        + b"done\n"
        + section_end("step_script")
        + b"Job succeeded\n"
    )


def test_pod_deleted_while_every_connection_is_silent(through_proxy: Proxied, tmp_path: Path) -> None:
    target, proxy = through_proxy.target, through_proxy.proxy
    job = Running(target.cluster, tmp_path, pipeline(script=["echo started", "sleep 120"]), *target.args)
    job.wait_for(b"started\n")
    pod = re.search(rb"Running on (\S+) via", job.trace())
    assert pod is not None
    silence_now(proxy)
    kubectl = [str(BIN.parent / "kubectl"), "--kubeconfig", str(through_proxy.direct.kubeconfig)]
    deleted = subprocess.run(
        [*kubectl, "delete", "pod", pod.group(1).decode(), "--wait=false"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    at = time.monotonic()
    assert deleted.returncode == 0, deleted.stderr
    done = job.finish(timeout=60)
    ended = time.monotonic() - at
    print(f"pod deleted under silence ({target.transport}): job ended {ended:.2f} s after the deletion")
    assert ended < NOTICED_WITHIN
    assert done.status == 3, done.trace[-2000:]
    # The health check (a GET beside the silent watch) or the log reader (a new connection after
    # its heartbeat or idle bound) notices first; both name the deletion.
    expected = header() + echo("echo started") + b"started\n" + echo("sleep 120") + section_end("step_script")
    # The trace puts the verdict on a line of its own; whether it adds a newline after the section's
    # end depends on what the trace saw last (the trace module's rule, not this test's subject).
    endings = [
        newline + b"ERROR: Job failed (system failure): pod default/POD " + why
        for newline in (b"", b"\n")
        for why in (b"was deleted\n", b"is being deleted\n")
    ]
    assert normalised(done.trace) in [expected + ending for ending in endings], done.trace[-600:]


# -- issue 10: a CA that did not sign the server's certificate --------------------------------------


def test_server_not_signed_by_the_configured_ca_fails_at_once(cluster: Cluster, tmp_path: Path) -> None:
    document = YAML(typ="safe").load(cluster.kubeconfig.read_text())
    other_ca = tls.generate().cert_pem  # self-signed: a CA of its own, which signed nothing of the cluster's
    document["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(other_ca).decode()
    wrong = tmp_path.parent / f"{tmp_path.name}.kubeconfig"
    with wrong.open("w") as out:
        YAML(typ="safe").dump(document, out)
    started = time.monotonic()
    done = Running(
        Cluster(wrong, cluster.state_dir, cluster.process), tmp_path, pipeline(script=["true"])
    ).finish()
    took = time.monotonic() - started
    server = document["clusters"][0]["cluster"]["server"]
    # The embedded cluster's serving certificate signs itself; a real API server's is signed by the
    # cluster's CA, which the configured CA is not.
    why = "unable to get local issuer certificate" if REAL_KUBECONFIG else "self-signed certificate"
    assert done.status == 3, done.trace[-2000:]
    assert took < 5, f"{took:.1f} s: retried as if the network were down"
    mentions = [line for line in done.trace.splitlines() if b"certificate verification" in line]
    assert mentions == [
        b"ERROR: Job failed (system failure): Kubernetes API: TLS certificate verification of the API server "
        + f"{server} failed ({why}): ".encode()
        + b"is the cluster's CA (certificate-authority / ca_file) the one that signed its certificate?"
    ], done.trace
