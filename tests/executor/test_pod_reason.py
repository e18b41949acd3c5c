"""A failed attach/exec right after PID 1 died gives way to the pod's own reason (issue 11)."""

import asyncio

import pytest

from kuberunner.executor import podhealth

CONTAINER_NOT_FOUND = 'unable to upgrade connection: container not found ("build")'
OOM = "pod default/p: container build ended: exit code 137, reason OOMKilled"


async def test_the_pods_reason_arriving_after_the_error_wins() -> None:
    broken: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.05, broken.set_result, OOM)
    assert await podhealth.reason_or(broken, CONTAINER_NOT_FOUND) == OOM


async def test_without_a_pod_reason_the_error_stands_after_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podhealth, "DEATH_REPORTED_WITHIN", 0.05)
    broken: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    assert await podhealth.reason_or(broken, CONTAINER_NOT_FOUND) == CONTAINER_NOT_FOUND
