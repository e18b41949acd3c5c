"""An OOM kill anywhere in a container ends the whole container.

The kubelet arranges that on cgroup v2 with `memory.oom.group`, so a job whose child runs out of
memory sees its container end as OOMKilled (137) rather than limp on. cgroup v1 has no such switch:
the group's OOM killer is switched off (tasks wait for memory instead of dying one by one) and this
ends PID 1 as soon as the group is out of memory, which takes its whole PID namespace with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from kuberunner.cluster.node.sandbox import MemoryCgroup

POLL_SECONDS = 0.1
"""cgroup v1 only offers an eventfd for this; a tenth of a second is well inside the runner's 5 s."""


async def kill_container_on_oom(pid: int, cgroup: MemoryCgroup) -> None:
    while True:
        await asyncio.sleep(POLL_SECONDS)
        if cgroup.under_oom() or cgroup.oom_killed():
            break
    cgroup.ended_by_oom_guard = True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
