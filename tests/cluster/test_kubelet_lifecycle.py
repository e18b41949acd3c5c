"""Pod lifecycle on real processes: phases, exit codes, init containers, deadlines, deletion, events."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from tests.cluster.fixtures_kubelet import Node, container, node

__all__ = ["node"]


def _host_mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def _processes_in_namespace(kind: str, namespace: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            if entry.isdigit() and os.readlink(f"/proc/{entry}/ns/{kind}") == namespace:
                found.append(entry)
    return found


async def test_success_and_failure_phases(node: Node) -> None:
    await node.create_pod("ok", [container("c", "exit 0")])
    await node.create_pod("bad", [container("c", "exit 3")])
    ok = await node.wait_phase("ok", ["Succeeded"])
    bad = await node.wait_phase("bad", ["Failed"])
    term_ok = ok["status"]["containerStatuses"][0]["state"]["terminated"]
    term_bad = bad["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term_ok["exitCode"], term_ok["reason"]) == (0, "Completed")
    assert (term_bad["exitCode"], term_bad["reason"]) == (3, "Error")
    assert term_bad["containerID"].startswith("containerd://")
    ready = {c["type"]: c for c in bad["status"]["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")
    reasons = [e["reason"] for e in node.store.events if e["name"] == "ok"]
    assert reasons == ["Scheduled", "Pulled", "Created", "Started"]
    assert {e["message"] for e in node.store.events} >= {
        'Container image "busybox:1.36" already present on machine',
        "Started container c",
    }


async def test_running_status_and_conditions(node: Node) -> None:
    await node.create_pod("run", [container("c", "sleep 60")])
    running = await node.wait_state("run", "running")
    assert running["startedAt"].endswith("Z")
    pod = node.pod("run")
    assert pod is not None
    status = pod["status"]
    assert status["phase"] == "Running"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    assert status["containerStatuses"][0]["ready"] is True
    assert status["containerStatuses"][0]["started"] is True


async def test_pid1_sigkill_ends_container_with_137_and_its_children(node: Node) -> None:
    # Kubernetes expands `$$` in a command to `$`, so `$$$$` reaches the shell as `$$`.
    await node.create_pod("pid1", [container("c", "sleep 300 & echo $$$$; wait")])
    await node.wait_state("pid1", "running")
    pid = node.host_pid("pid1")
    ns = os.readlink(f"/proc/{pid}/ns/pid")
    log = node.state_dir.glob("pods/default_pid1_*/c/0.log")
    await node.store.wait_for(lambda: any(p.read_bytes() for p in node.state_dir.glob("pods/*pid1*/c/0.log")))
    assert next(log).read_bytes().endswith(b" stdout F 1\n")
    os.kill(pid, signal.SIGKILL)
    term = await node.wait_state("pid1", "terminated")
    assert (term["exitCode"], term["signal"], term["reason"]) == (137, 9, "Error")
    assert _processes_in_namespace("pid", ns) == []


async def test_memory_limit_overrun_is_oomkilled(node: Node) -> None:
    spec = container("c", "python3 -c 'b = bytearray(300 * 2**20)'", resources={"limits": {"memory": "32Mi"}})
    await node.create_pod("oom", [spec])
    term = await node.wait_state("oom", "terminated")
    assert (term["exitCode"], term["reason"]) == (137, "OOMKilled")


async def test_init_containers_run_first_and_share_volumes(node: Node) -> None:
    volume = [{"name": "work", "mountPath": "/work"}]
    await node.create_pod(
        "init",
        [container("app", "cat /work/order", volumeMounts=volume)],
        initContainers=[
            container("one", "echo one >> /work/order", volumeMounts=volume),
            container("two", "echo two >> /work/order", volumeMounts=volume),
        ],
        volumes=[{"name": "work", "emptyDir": {}}],
    )
    await node.wait_phase("init", ["Succeeded"])
    log = next(node.state_dir.glob("pods/*init*/app/0.log")).read_bytes()
    assert [line.split(b" ", 3)[3] for line in log.splitlines()] == [b"one", b"two"]


async def test_failing_init_container_fails_the_pod(node: Node) -> None:
    await node.create_pod("initfail", [container("app", "exit 0")], initContainers=[container("i", "exit 7")])
    pod = await node.wait_phase("initfail", ["Failed"])
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 7
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"


async def test_command_that_cannot_start_is_start_error(node: Node) -> None:
    await node.create_pod("nocmd", [{"name": "c", "image": "x", "command": ["/no/such/binary"]}])
    pod = await node.wait_phase("nocmd", ["Failed"])
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (128, "StartError")
    assert "no/such/binary" in term["message"]
    assert any(e["reason"] == "Failed" and e["type"] == "Warning" for e in node.store.events)


async def test_active_deadline_fails_the_pod(node: Node) -> None:
    await node.create_pod(
        "deadline", [container("c", "sleep 60")], activeDeadlineSeconds=1, terminationGracePeriodSeconds=1
    )
    pod = await node.wait_phase("deadline", ["Failed"])
    assert pod["status"]["reason"] == "DeadlineExceeded"
    await node.wait_state("deadline", "terminated")


async def test_graceful_delete_sigterm_then_removal_and_nothing_left(node: Node) -> None:
    await node.create_pod(
        "del",
        [container("c", "trap 'echo bye; exit 0' TERM; echo ready; sleep 60 & wait")],
        volumes=[{"name": "v", "emptyDir": {}}],
    )
    await node.store.wait_for(lambda: any(p.read_bytes() for p in node.state_dir.glob("pods/*del*/c/0.log")))
    pid = node.host_pid("del")
    ns = os.readlink(f"/proc/{pid}/ns/mnt")
    await node.delete("del", 30)
    await node.store.wait_for(lambda: "del" in node.store.removed)
    assert any(e["reason"] == "Killing" and e["message"] == "Stopping container c" for e in node.store.events)
    assert _processes_in_namespace("mnt", ns) == []
    assert not list(node.state_dir.glob("pods/*del*"))
    assert list((node.state_dir / "containers").iterdir()) == []
    assert str(node.state_dir) not in _host_mounts()


async def test_grace_period_ends_with_sigkill(node: Node) -> None:
    await node.create_pod("stubborn", [container("c", "sleep 3600")], terminationGracePeriodSeconds=1)
    await node.wait_state("stubborn", "running")
    await node.delete("stubborn", 1)
    await node.store.wait_for(lambda: "stubborn" in node.store.removed, within=10)


async def test_restart_policy_on_failure_restarts(node: Node) -> None:
    await node.create_pod("again", [container("c", "exit 1")], restartPolicy="OnFailure")
    await node.store.wait_for(lambda: node.status("again").get("restartCount") == 1)
    status = node.status("again")
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    await node.delete("again", 0)
