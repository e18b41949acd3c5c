"""The four commands: up, down, status, exec. Exit status 0 done, 1 failed (one line says why), 2 usage."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import build, configs, images, node, pki, runner_image
from .layout import (
    CGROUP_PARENT,
    COMPONENTS,
    CONTAINERD_SOCKET,
    HELPER_IMAGE,
    JOB_IMAGE,
    NODE_IP,
    NODE_NAME,
    PAUSE_IMAGE,
    Layout,
)
from .proc import Failure, run, tail

USAGE = "usage: scripts/real-cluster up | down | status | runner-image [--write-lock] | exec -- CMD [ARG...]"
REPO = Path(__file__).resolve().parents[2]


def layout_from(env: Mapping[str, str]) -> Layout:
    return Layout(Path(env.get("REAL_CLUSTER_DIR") or REPO / ".real-cluster").resolve())


def cluster_env(layout: Layout) -> dict[str, str]:
    """What `exec` puts in the environment, and what `up` writes to REAL_CLUSTER_DIR/env."""
    return {
        "KUBECONFIG": str(layout.admin_kubeconfig),
        "REAL_CLUSTER_IMAGE": JOB_IMAGE,
        "REAL_CLUSTER_HELPER_IMAGE": HELPER_IMAGE,
        # The test suite's switch (tests/conftest.py): these three make it target this cluster.
        "KUBERUNNER_TEST_KUBECONFIG": str(layout.admin_kubeconfig),
        "KUBERUNNER_TEST_IMAGE": JOB_IMAGE,
        "KUBERUNNER_TEST_HELPER_IMAGE": HELPER_IMAGE,
        # Where the tests' own servers (tests/gitlab's fake GitLab) listen so that pods reach them.
        "KUBERUNNER_TEST_HOST_ADDRESS": NODE_IP,
        # `kuberunner exec`'s default image for jobs without `image:`, as gitlab-runner's flag env.
        "KUBERNETES_IMAGE": JOB_IMAGE,
        "KUBERNETES_HELPER_IMAGE": HELPER_IMAGE,
    }


# -- talking to the API server (from inside the cluster's network namespace) ------------------------------


def _admin_context(layout: Layout) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    context.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
    return context


def api_get(layout: Layout, path: str) -> Any:
    """GET on the API server as admin; None for 404. Bounded: 5 s, 8 MiB."""
    try:
        with urllib.request.urlopen(
            f"https://{NODE_IP}:6443{path}", context=_admin_context(layout), timeout=5
        ) as response:
            return json.loads(response.read(8 * 2**20))
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise OSError(f"GET {path}: {error.code}") from error


def _etcd_healthy() -> bool:
    with urllib.request.urlopen("http://127.0.0.1:2379/health", timeout=2) as response:
        health: object = json.loads(response.read(4096)).get("health")
        return health == "true"


def _apiserver_ready(layout: Layout) -> bool:
    try:
        with urllib.request.urlopen(
            f"https://{NODE_IP}:6443/readyz", context=_admin_context(layout), timeout=5
        ) as response:
            body: bytes = response.read(100)
            return body == b"ok"
    except urllib.error.HTTPError:
        return False


def node_ready(layout: Layout) -> bool:
    found = api_get(layout, f"/api/v1/nodes/{NODE_NAME}")
    conditions = (found or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _defaults_exist(layout: Layout) -> bool:
    return (
        api_get(layout, "/api/v1/namespaces/default/serviceaccounts/default") is not None
        and api_get(layout, "/api/v1/namespaces/default/configmaps/kube-root-ca.crt") is not None
    )


# -- up ---------------------------------------------------------------------------------------------------


def _running(layout: Layout) -> dict[str, int | None]:
    return {name: node.read_pid(layout.pid_file(name)) for name in ("holder", *COMPONENTS)}


def up(layout: Layout) -> int:
    started = time.monotonic()
    running = _running(layout)
    if all(running.values()):
        print(f"real-cluster: already up; admin kubeconfig: {layout.admin_kubeconfig}")
        return 0
    if any(running.values()):
        raise Failure("a cluster is partly running (see `scripts/real-cluster status`); run `down` first")
    build.preflight(layout)
    if node.cgroup_pids():
        raise Failure(
            f"processes run in the {CGROUP_PARENT} cgroups but this directory's cluster is down (another "
            "REAL_CLUSTER_DIR?): run that one's `down` first; one real cluster per machine"
        )
    build.install_packages()
    build.build_binaries(layout)
    build.check_versions(layout)
    tars = images.build_images(
        layout.images,
        build.build_pause(layout),
        {"pause": PAUSE_IMAGE, "job": JOB_IMAGE, "helper": HELPER_IMAGE},
    )
    pki.make_pki(layout)
    pki.write_kubeconfigs(layout)
    print(f"real-cluster: built in {time.monotonic() - started:.0f} s; starting", flush=True)
    try:
        _start(layout, tars)
    except BaseException:
        problems = _down(layout)
        for problem in problems:
            print(f"real-cluster: {problem}", file=sys.stderr)
        raise
    write_env(layout)
    print(
        f"real-cluster: up in {time.monotonic() - started:.0f} s; admin kubeconfig: {layout.admin_kubeconfig}"
    )
    print(
        f"real-cluster: job image {JOB_IMAGE}, helper image {HELPER_IMAGE}; environment in {layout.env_file}"
    )
    return 0


def _start(layout: Layout, tars: list[Path]) -> None:
    for directory in (layout.run, layout.state, layout.logs):
        directory.mkdir(parents=True, exist_ok=True)
    holder = node.create_namespaces(layout)
    node.enter_network(holder)
    node.create_cgroups()
    node.start(layout, holder, "etcd", configs.argv(layout, "etcd"))
    node.wait_until(layout, "etcd", _etcd_healthy, within=30, what="/health")
    node.start(layout, holder, "kube-apiserver", configs.argv(layout, "kube-apiserver"))
    node.start(layout, holder, "containerd", configs.argv(layout, "containerd"))
    ctr = ["ctr", f"--address={CONTAINERD_SOCKET}", "--namespace=k8s.io"]

    def containerd_answers() -> bool:
        argv = node.in_namespaces(holder, [*ctr, "version"])
        return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0

    node.wait_until(layout, "containerd", containerd_answers, within=30, what="its socket")
    for tar in tars:
        run(node.in_namespaces(holder, [*ctr, "images", "import", str(tar)]), quiet=True)
    node.wait_until(layout, "kube-apiserver", lambda: _apiserver_ready(layout), within=90, what="/readyz")
    for name in ("kube-controller-manager", "kube-scheduler", "kubelet"):
        node.start(layout, holder, name, configs.argv(layout, name))
    node.wait_until(layout, "kubelet", lambda: node_ready(layout), within=120, what="the node Ready")
    node.wait_until(
        layout,
        "kube-controller-manager",
        lambda: _defaults_exist(layout),
        within=60,
        what="the default ServiceAccount and kube-root-ca.crt",
    )
    for name in COMPONENTS:
        if node.read_pid(layout.pid_file(name)) is None:
            raise Failure(f"{name} exited; the end of {layout.log(name)}:\n" + tail(layout.log(name), 20))


def write_env(layout: Layout) -> None:
    lines = [f"{key}={value}" for key, value in cluster_env(layout).items()]
    layout.env_file.write_text("\n".join(lines) + "\n")


# -- down, status, exec -----------------------------------------------------------------------------------


def _down(layout: Layout) -> list[str]:
    problems = node.stop_everything(layout, ("holder", *COMPONENTS))
    mounted = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(str(layout.root))
    ]
    if mounted:
        problems.append("still mounted, kept its files: " + ", ".join(mounted))
        return problems
    for directory in (layout.run, layout.state):
        shutil.rmtree(directory, ignore_errors=True)
    layout.env_file.unlink(missing_ok=True)
    return problems


def down(layout: Layout) -> int:
    if os.geteuid() != 0:
        raise Failure("needs root to stop the cluster's processes and remove its cgroups")
    problems = _down(layout)
    for problem in problems:
        print(f"real-cluster: {problem}", file=sys.stderr)
    print("real-cluster: down" + (" with problems" if problems else ""))
    return 1 if problems else 0


def status(layout: Layout) -> int:
    running = _running(layout)
    for name, pid in running.items():
        print(f"{name:24} {'running, pid ' + str(pid) if pid else 'not running'}")
    holder = running["holder"]
    if holder and running["kube-apiserver"]:
        node.enter_network(holder)
        try:
            ready = node_ready(layout)
        except OSError as error:
            ready = False
            print(f"{'node':24} API server does not answer: {error}")
        else:
            print(f"{'node':24} {NODE_NAME} {'Ready' if ready else 'not Ready'}")
            print(f"{'admin kubeconfig':24} {layout.admin_kubeconfig}")
    if all(running.values()):
        return 0
    return 3 if not any(running.values()) else 1


def exec_(layout: Layout, argv: list[str], env: Mapping[str, str]) -> int:
    holder = node.holder(layout)
    if holder is None or not all(_running(layout).values()):
        raise Failure(
            "the cluster is not up (see `scripts/real-cluster status`); run `scripts/real-cluster up`"
        )
    if not argv:
        raise Failure(USAGE)
    # The network namespace only: the caller keeps its own file system view and working directory.
    full_env = {**env, **cluster_env(layout)}
    os.execvpe("nsenter", ["nsenter", f"--target={holder}", "--net", "--", *argv], full_env)


def runner_image_command(layout: Layout) -> int:
    """The runner's image (deploy's Dockerfile, made locally) built once and put into the running
    cluster's containerd unless it holds it already; prints the image's name."""
    holder = node.holder(layout)
    if holder is None or not all(_running(layout).values()):
        raise Failure("the cluster is not up (see `scripts/real-cluster status`)")
    name, tar = runner_image.build(REPO, layout.images, REPO / ".venv" / "bin" / "python")
    ctr = ["ctr", f"--address={CONTAINERD_SOCKET}", "--namespace=k8s.io"]
    held = run(node.in_namespaces(holder, [*ctr, "images", "ls", "-q"]), capture=True).split()
    if name not in held:
        run(node.in_namespaces(holder, [*ctr, "images", "import", str(tar)]), quiet=True)
    stale = [
        image for image in held if image.startswith(runner_image.IMAGE_REPOSITORY + ":") and image != name
    ]
    if stale:
        run(node.in_namespaces(holder, [*ctr, "images", "rm", *stale]), quiet=True)
    print(name)
    return 0


def main(args: list[str], env: Mapping[str, str]) -> int:
    layout = layout_from(env)
    try:
        match args:
            case ["up"]:
                return up(layout)
            case ["down"]:
                return down(layout)
            case ["status"]:
                return status(layout)
            case ["runner-image"]:
                return runner_image_command(layout)
            case ["runner-image", "--write-lock"]:
                print(runner_image.write_lock(REPO / ".venv" / "bin" / "python"))
                return 0
            case ["exec", "--", *command] if command:
                return exec_(layout, command, env)
            case _:
                print(USAGE, file=sys.stderr)
                return 2
    except Failure as failure:
        print(f"real-cluster: {failure}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("real-cluster: interrupted", file=sys.stderr)
        return 130
