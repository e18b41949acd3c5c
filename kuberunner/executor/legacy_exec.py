"""The legacy strategy (FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY=true): every stage is a pods/exec.

Its output flows over that connection and its exit code comes from the exec's status, as before
the seed. A connection lost mid-stage loses the stage: that is reported as a system failure whose
outcome is unknown, never as a success or a script failure. Each stage is exec'd, and killed, in the
container the job's `StagePlan` names for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from kuberunner.executor.strategy import Exited, JobContext, Lost, StageEnd, Stopped
from kuberunner.executor.waiting import first_of
from kuberunner.kube import channels, streams
from kuberunner.kube.errors import ExecStartError, KubeError, StreamLost

CONNECTION_LOST = (
    "the connection to the Kubernetes API was lost while the stage ran "
    "(legacy exec strategy); the script's outcome is unknown"
)

_RUN_SCRIPT = (
    "for s in /usr/local/bin/bash /usr/bin/bash /bin/bash /bin/sh; do "
    'if [ -x "$s" ]; then export "KUBERUNNER_STAGE_$1=1"; exec "$s" "$2"; fi; done; '
    "echo shell not found >&2; exit 1"
)


class LegacyExecStrategy:
    name = "legacy exec"

    async def open(self, job: JobContext) -> None:
        return None

    async def close(self) -> None:
        return None

    async def run_stage(self, job: JobContext, stage: str, *, deadline: float) -> StageEnd:
        loop = asyncio.get_running_loop()
        token = secrets.token_hex(8)
        job.state.stage = stage
        command = ["sh", "-c", _RUN_SCRIPT, "kuberunner-stage", token, job.settings.paths.script(stage)]
        container = job.plan.container(stage)
        running = asyncio.ensure_future(self._exec(job, container, command))
        try:
            done = await first_of([running, job.broken, job.cancel.wait()], within=deadline - loop.time())
            if running in done:
                return running.result()
            if job.broken in done:
                return Lost(job.broken.result())
            await self._kill(job, container, token)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(running), job.settings.kill_grace)
            return Stopped(canceled=job.cancel.is_set())
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running

    async def _exec(self, job: JobContext, container: str, command: list[str]) -> StageEnd:
        try:
            session = await streams.open_exec(
                job.client,
                namespace=job.state.namespace,
                pod=job.state.pod,
                container=container,
                command=command,
            )
            async with session:
                async for frame in session.output():
                    if frame.channel in (channels.STDOUT, channels.STDERR):
                        job.trace.job_output(frame.data)
                return Exited(await session.wait())
        except StreamLost:
            return Lost(CONNECTION_LOST)
        except ExecStartError as exc:
            return Lost(f"cannot start the stage in the {container} container: {exc}")
        except KubeError as exc:
            return Lost(f"Kubernetes API: {exc}")

    async def _kill(self, job: JobContext, container: str, token: str) -> None:
        script = job.settings.paths.script("kill_stage")
        with contextlib.suppress(KubeError):
            session = await streams.open_exec(
                job.client,
                namespace=job.state.namespace,
                pod=job.state.pod,
                container=container,
                command=["sh", script, token],
            )
            async with session:
                await session.wait()
