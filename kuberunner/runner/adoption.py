"""What a starting `kuberunner run` does before it asks GitLab for new jobs.

Every job record (`journal`) no live process holds is taken over (`gitlab_job.adopt_job`). Every pod
with this runner's owner label (its system id and record directory) that no record names is an
orphan of a runner that died before it could record it, and is deleted, named in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from kuberunner.executor.podspec import OWNER_LABEL
from kuberunner.executor.resume import delete_pod
from kuberunner.kube.errors import KubeError
from kuberunner.runner.gitlab_job import JobEnv, adopt_job
from kuberunner.runner.journal import BadRecord, Journal, runner_key

log = logging.getLogger("kuberunner.runner")

StartJob = Callable[[Coroutine[Any, Any, None], str], None]


async def sweep_orphans(journal: Journal, envs: Sequence[JobEnv], owner: str) -> list[str]:
    """Delete this runner's pods (labelled `owner`) that no record names; their `namespace/name`s."""
    recorded = set(journal.pods())
    deleted: list[str] = []
    seen: set[tuple[int, str]] = set()
    for env in envs:
        namespace = env.settings.namespace
        key = (id(env.client), namespace)
        if key in seen:
            continue
        seen.add(key)
        try:
            pods = await env.client.list_pods(namespace, label_selector=f"{OWNER_LABEL}={owner}")
        except KubeError as exc:
            log.warning("cannot look for orphaned pods in namespace %s: %s", namespace, exc)
            continue
        for pod in pods:
            name = str(pod.get("metadata", {}).get("name", ""))
            if not name or (namespace, name) in recorded:
                continue
            log.warning("deleting orphaned pod %s/%s (no job record names it)", namespace, name)
            try:
                await delete_pod(env.client, namespace, name)
            except KubeError as exc:
                log.warning("could not delete orphaned pod %s/%s: %s", namespace, name, exc)
                continue
            deleted.append(f"{namespace}/{name}")
    return deleted


def adopt_recorded(journal: Journal, envs: Sequence[JobEnv], start: StartJob) -> int:
    """Start a task for every record no other process holds; how many were started."""
    adopted = 0
    for job_id in journal.job_ids():
        claim = journal.claim(job_id)
        if claim is None:
            log.info("job %d: another runner process still runs it", job_id)
            continue
        try:
            record = journal.read(job_id)
        except BadRecord as exc:
            log.error("%s; removing it", exc)
            journal.remove(job_id, claim)
            continue
        env = next(
            (e for e in envs if e.runner.url == record.url and runner_key(e.runner.token) == record.runner),
            None,
        )
        if env is None:
            log.warning(
                "job %d: no [[runners]] entry of config.toml is the one that ran it; left alone", job_id
            )
            claim.release()
            continue
        start(adopt_job(env, journal, record, claim), f"job {job_id}")
        adopted += 1
    return adopted
