"""`exec`'s artifacts and cache between two jobs of one run (issue 13), through the executor: the
runner's ObjectServer stands in for GitLab's artifacts endpoints and for S3, the helper stages are
the ones a GitLab job runs. (The `exec` command's hook into its pipeline is the lead's to wire.)"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from cli.execution import Cluster
from real.cluster import TEST_HOST_ADDRESS

from kuberunner.executor.exec_transfers import ExecDependency, exec_transfers
from kuberunner.executor.job import JobRequest, base_variables, run_job
from kuberunner.executor.object_server import ObjectServer
from kuberunner.executor.results import JobResult, Success
from kuberunner.job import transfer_keywords as kw
from kuberunner.job.spec import JobSpec
from kuberunner.kube import config as kube_config
from kuberunner.kube.client import KubeClient
from kuberunner.local import executor_settings
from kuberunner.trace import Trace

PROJECT = "/builds/exec-transfers"
SECTION = re.compile(rb"section_(start|end):\d+:")


class Collected:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass


async def run(
    cluster: Cluster, server: ObjectServer, job_id: int, spec: JobSpec, deps: list[ExecDependency], tmp: Path
) -> tuple[JobResult, bytes]:
    variables = (*base_variables(project_dir=PROJECT), ("CI_JOB_NAME", spec.name))
    transfers, services = exec_transfers(
        spec.transfers,
        server=server,
        job_id=job_id,
        dependencies=deps,
        variables=dict(variables),
        project_dir=PROJECT,
        project_root=tmp,
        warnings=[],
    )
    request = JobRequest(
        job=spec,
        job_id=str(job_id),
        variables=variables,
        project_dir=PROJECT,
        project_archive=None,
        timeout=120,
        transfers=transfers,
        services=services,
    )
    sink = Collected()
    trace = Trace(color=False)
    trace.add_sink(sink)
    cfg = await kube_config.load_kubeconfig(cluster.kubeconfig, None)
    async with await KubeClient.open(cfg) as client:
        result = await run_job(
            # As `exec` makes them: the image from $KUBERNETES_IMAGE, which the real tier sets.
            request=request,
            client=client,
            settings=executor_settings(None, "default"),
            trace=trace,
            cancel=asyncio.Event(),
        )
    trace.close()
    return result, SECTION.sub(b"section_\\1:", bytes(sink.data))


async def test_a_build_then_test_pipeline_passes_artifacts_and_cache(
    gitlab_cluster: Cluster, tmp_path: Path
) -> None:
    server = ObjectServer(str(tmp_path / "objects"), host=TEST_HOST_ADDRESS)  # where pods reach us
    await server.start()
    try:
        build = JobSpec(
            name="build",
            script=(
                "mkdir -p out .deps && head -c 1048576 /dev/urandom > out/app.bin && echo cached > .deps/x",
                "sha256sum out/app.bin",
            ),
            transfers=kw.Transfers(
                artifacts=kw.Artifacts(paths=("out/",)),
                caches=(kw.Cache(key="deps-$CI_JOB_NAME", paths=(".deps/",)),),
            ),
        )
        built, build_trace = await run(gitlab_cluster, server, 1, build, [], tmp_path)
        assert isinstance(built, Success), build_trace.decode(errors="replace")[-2000:]
        archive = (tmp_path / "objects" / "jobs" / "1" / "archive").read_bytes()
        assert archive[:2] == b"PK"  # the zip the helper uploaded, as the server keeps it
        test = JobSpec(
            name="test",
            script=("sha256sum out/app.bin", "cat .deps/x"),
            transfers=kw.Transfers(caches=(kw.Cache(key="deps-build", policy="pull", paths=(".deps/",)),)),
        )
        tested, test_trace = await run(
            gitlab_cluster, server, 2, test, [ExecDependency(1, "build")], tmp_path
        )
    finally:
        await server.close()
    assert isinstance(tested, Success), test_trace.decode(errors="replace")[-2000:]
    sums = [line for line in build_trace.split(b"\n") if line.endswith(b"  out/app.bin")]
    assert len(sums) == 1 and sums[0] + b"\n" in test_trace
    assert b"Downloading artifacts from coordinator... ok  id=1\n" in test_trace
    assert b"Checking cache for deps-build...\nSuccessfully extracted cache\n" in test_trace
    assert b"\ncached\n" in test_trace
