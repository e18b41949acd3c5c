"""deploy/ on a real Kubernetes (issue 15): the chart and the plain manifests pass the API server's own
validation, and the runner, installed by the chart in a pod of its own with nothing but the chart's
ServiceAccount and Role, takes a job from GitLab and runs it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from cli.execution import BIN, Cluster, section_end, unstamped
from gitlab.fake_gitlab import FakeGitLab, FakeJob
from gitlab.git_http import make_repository
from gitlab.runner_process import RunnerProcess, finished, script_job
from ruamel.yaml import YAML

from .cluster import HELPER_IMAGE, TEST_HOST_ADDRESS, kubectl

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "chart"
POD = re.compile(rb"kuberunner-job-[0-9a-f]{8}")
RUNNER_UID = 10001
TOKEN_PATH = "/var/lib/kuberunner/config.toml"

# A first run builds helm (minutes, once per machine) and the runner's image (seconds, once per source).
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def helm() -> Path:
    """`helm` as scripts/build-helm leaves it: built from the Go module proxy once, then reused."""
    done = subprocess.run(
        [str(REPO / "scripts" / "build-helm")], capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stderr[-3000:]
    go_path = subprocess.run(
        ["go", "env", "GOPATH"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PATH": os.environ["PATH"] + ":/usr/local/go/bin"},
    ).stdout.strip()
    return Path(go_path) / "bin" / "helm"


def render(helm: Path, namespace: str, *settings: str) -> str:
    argv = [str(helm), "template", "kuberunner", str(CHART), "--namespace", namespace]
    for setting in settings:
        argv += ["--set-json" if setting.startswith("json:") else "--set", setting.removeprefix("json:")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in YAML(typ="safe").load_all(text) if doc]


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace of this test's own, gone (with everything in it) afterwards."""
    name = "kuberunner-deploy-" + secrets.token_hex(3)
    kubectl(cluster.kubeconfig, "create", "namespace", name)
    yield name
    kubectl(cluster.kubeconfig, "delete", "namespace", name, "--wait=false")


def test_the_chart_for_each_transport_and_the_manifests_pass_server_side_validation(
    helm: Path, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    token = "glrt-" + secrets.token_hex(10)
    roles = {}
    for transport in ("file", "kubelet"):
        text = render(
            helm,
            namespace,
            "config.runners.url=https://gitlab.example.com",
            f"runnerToken.value={token}",
            f"config.runners.kubernetes.log_transport={transport}",
            'json:config.runners.kubernetes.node_selector={"kubernetes.io/os":"linux"}',
            "config.runners.kubernetes.poll_timeout=60",
        )
        kubectl(cluster.kubeconfig, "apply", "--dry-run=server", "-f", "-", stdin=text)
        docs = documents(text)
        # The token: in the Secret only, never in the ConfigMap or anywhere else in clear.
        assert token not in text
        (secret,) = [d for d in docs if d["kind"] == "Secret"]
        assert base64.b64decode(secret["data"]["runner-token"]).decode() == token
        assert all(
            base64.b64encode(token.encode()).decode() not in json.dumps(d) for d in docs if d is not secret
        )
        (role,) = [d for d in docs if d["kind"] == "Role"]
        roles[transport] = {
            resource: rule["verbs"] for rule in role["rules"] for resource in rule["resources"]
        }
        (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
        toml = config_map["data"]["config.toml.template"]
        assert f'log_transport = "{transport}"' in toml and "poll_timeout = 60\n" in toml
    common = {
        "pods": ["create", "get", "list", "watch", "delete"],
        "pods/attach": ["get", "create"],
        "pods/log": ["get"],
        "secrets": ["create", "get"],
        "events": ["list", "watch"],
    }
    assert roles == {"file": {**common, "pods/exec": ["get", "create"]}, "kubelet": common}

    # The plain manifests are the chart's rendering, and the API server takes them too.
    fresh = tmp_path / "manifests"
    subprocess.run(
        [str(REPO / "deploy" / "render-manifests"), str(fresh)],
        check=True,
        env={**os.environ, "HELM": str(helm)},
    )
    shipped = REPO / "deploy" / "manifests"
    names = sorted(p.name for p in shipped.iterdir())
    assert names == ["role-file.yaml", "role-kubelet.yaml", "runner.yaml"]
    for name in names:
        assert (fresh / name).read_text() == (shipped / name).read_text(), (
            f"run deploy/render-manifests: {name}"
        )
    # Their namespace must exist for the server to check them; made for the check when it is not there.
    made = kubectl(cluster.kubeconfig, "create", "namespace", "kuberunner", check=False)
    try:
        for name in names:
            kubectl(cluster.kubeconfig, "apply", "--dry-run=server", "-f", str(shipped / name))
    finally:
        if made:
            kubectl(cluster.kubeconfig, "delete", "namespace", "kuberunner", "--wait=false")


def test_a_token_in_config_values_is_refused(helm: Path) -> None:
    argv = [str(helm), "template", "kr", str(CHART), "--set", "config.runners.url=https://g.example"]
    done = subprocess.run(
        [*argv, "--set", "runnerToken.value=t", "--set", "config.runners.token=glrt-x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "config.runners.token: the token goes in runnerToken (a Secret)" in done.stderr
    assert "glrt-x" not in done.stdout


def test_values_become_a_config_toml_the_runner_reads_and_a_hostile_token_stays_a_string(
    helm: Path, tmp_path: Path
) -> None:
    """The init container's step on this machine: the ConfigMap's template, the Secret's token, one
    0600 file; `kuberunner list` then reads it with every key checked."""
    text = render(
        helm,
        "ci",
        "config.runners.url=https://gitlab.example.com",
        "runnerToken.value=unused",
        "config.log_level=info",
        "config.log_format=json",
        "config.listen_address=:9252",
        "config.runners.kubernetes.cpu_request=250m",
        "config.runners.kubernetes.poll_interval=2",
        'json:config.runners.kubernetes.node_selector={"kubernetes.io/os":"linux"}',
        'json:config.runners.kubernetes.node_tolerations={"ci=true":"NoSchedule"}',
        'json:config.runners.kubernetes.pod_security_context={"run_as_non_root":true,"run_as_user":1000}',
        'json:config.runners.kubernetes.volumes={"empty_dir":[{"name":"scratch","mount_path":"/scratch"}]}',
    )
    (config_map,) = [d for d in documents(text) if d["kind"] == "ConfigMap"]
    (deployment,) = [d for d in documents(text) if d["kind"] == "Deployment"]
    (runner,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "runner"]
    assert runner["ports"] == [{"name": "metrics", "containerPort": 9252}]
    template = tmp_path / "config.toml.template"
    template.write_text(config_map["data"]["config.toml.template"])
    script = tmp_path / "assemble-config.py"
    script.write_text(config_map["data"]["assemble-config.py"])
    hostile = 'glrt-x"\n[[runners]]\nurl = "https://evil.example"\ntoken = "'
    token_file = tmp_path / "runner-token"
    token_file.write_text(hostile + "\n")
    out = tmp_path / "state" / "config.toml"
    out.parent.mkdir()
    subprocess.run([sys.executable, str(script), str(template), str(token_file), str(out)], check=True)
    assert out.stat().st_mode & 0o777 == 0o600
    config = tomllib.loads(out.read_text())
    assert [(r["url"], r["token"]) for r in config["runners"]] == [("https://gitlab.example.com", hostile)]
    assert config["runners"][0]["kubernetes"]["volumes"] == {
        "empty_dir": [{"mount_path": "/scratch", "name": "scratch"}]
    }
    listed = subprocess.run(
        [str(BIN), "list", "-c", str(out)], capture_output=True, text=True, timeout=60, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert "kuberunner" in listed.stdout + listed.stderr
    assert hostile not in listed.stdout + listed.stderr


# -- the runner inside the cluster --------------------------------------------------------------------


@pytest.fixture(scope="module")
def runner_image() -> str:
    """The Dockerfile's image as made on this machine, in the cluster's containerd (built once)."""
    done = subprocess.run(
        [str(REPO / "scripts" / "real-cluster"), "runner-image"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    return make_repository(tmp_path_factory.mktemp("git"))


@pytest.fixture
async def gitlab(repository: tuple[Path, list[str]]) -> AsyncIterator[FakeGitLab]:
    fake = FakeGitLab(repository[0])
    await fake.start(host=TEST_HOST_ADDRESS)
    yield fake
    await fake.close()


def comparable(trace: bytes) -> bytes:
    """Without what differs between two runs of one job: the pod's suffix, time stamps, and the
    pod-start progress lines."""
    lines = unstamped(POD.sub(b"POD", trace)).split(b"\n")
    return b"\n".join(line for line in lines if not line.startswith(b"Waiting for pod"))


def job_spec() -> dict[str, Any]:
    return script_job("cat version.txt", "echo in-cluster runner $CI_JOB_ID", 'printf "no newline"')


def runner_pod(kubeconfig: Path, namespace: str) -> dict[str, Any]:
    out = kubectl(
        kubeconfig, "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=kuberunner", "-o", "json"
    )
    (pod,) = json.loads(out)["items"]
    return cast(dict[str, Any], pod)


async def in_cluster_job(
    helm: Path, cluster: Cluster, namespace: str, image: str, gitlab: FakeGitLab, transport: str
) -> FakeJob:
    job = gitlab.enqueue(job_spec())
    runner = gitlab.add_runner()
    repository, _, tag = image.rpartition(":")
    text = render(
        helm,
        namespace,
        f"image.repository={repository}",
        f"image.tag={tag}",
        f"config.runners.url={gitlab.base_url}",
        f"runnerToken.value={runner.token}",
        "config.check_interval=1",
        f"config.runners.kubernetes.log_transport={transport}",
        # The jobs clone with git in `build` too, as tests/gitlab's do: the helper image has it.
        f"config.runners.kubernetes.image={HELPER_IMAGE}",
        f"config.runners.kubernetes.helper_image={HELPER_IMAGE}",
        "terminationGracePeriodSeconds=5",
    )
    await asyncio.to_thread(kubectl, cluster.kubeconfig, "apply", "-f", "-", stdin=text)
    try:
        await asyncio.wait_for(job.finished.wait(), timeout=150)
    except TimeoutError:
        logs = await asyncio.to_thread(
            kubectl,
            cluster.kubeconfig,
            "logs",
            "-n",
            namespace,
            "deploy/kuberunner",
            "--all-containers",
            check=False,
        )
        described = await asyncio.to_thread(
            kubectl, cluster.kubeconfig, "describe", "pods", "-n", namespace, check=False
        )
        raise AssertionError(f"job {job.id}: {job.state}\n{logs[-3000:]}\n{described[-3000:]}") from None
    return job


@pytest.mark.parametrize("transport", ["file", "kubelet"])
async def test_the_chart_runs_the_runner_in_the_cluster_and_it_runs_a_job(
    transport: str,
    helm: Path,
    runner_image: str,
    cluster: Cluster,
    namespace: str,
    gitlab: FakeGitLab,
    tmp_path: Path,
) -> None:
    job = await in_cluster_job(helm, cluster, namespace, runner_image, gitlab, transport)
    assert job.state == "success", job.text[-3000:]
    assert job.checksum_ok
    assert unstamped(job.text).endswith(
        f"in-cluster runner {job.id}\n".encode()
        + b'\x1b[32;1m$ printf "no newline"\x1b[0;m\n'
        + b"no newline\n"
        + section_end("step_script")
        + b"\x1b[32;1mJob succeeded\x1b[0;m\n"
    )

    pod = runner_pod(cluster.kubeconfig, namespace)
    # In-cluster config: no kubeconfig anywhere, the ServiceAccount's token, and only the chart's Role.
    account = f"system:serviceaccount:{namespace}:kuberunner"
    assert pod["spec"]["serviceAccountName"] == "kuberunner"

    def can_i(*args: str) -> str:
        return kubectl(cluster.kubeconfig, "auth", "can-i", "--as", account, *args, check=False).strip()

    assert can_i("create", "pods", "-n", namespace) == "yes"
    assert can_i("create", "pods", "--subresource=exec", "-n", namespace) == (
        "yes" if transport == "file" else "no"
    )
    assert can_i("list", "secrets", "-n", namespace) == "no"
    assert can_i("create", "pods", "-n", "default") == "no"
    assert can_i("list", "nodes") == "no"

    # The file holding the token is the runner user's alone; the ConfigMap never had it.
    stat = kubectl(
        cluster.kubeconfig,
        "exec",
        "-n",
        namespace,
        pod["metadata"]["name"],
        "-c",
        "runner",
        "--",
        "python",
        "-c",
        f"import os; s = os.stat({TOKEN_PATH!r}); print(oct(s.st_mode & 0o777), s.st_uid)",
    )
    assert stat.split() == ["0o600", str(RUNNER_UID)]
    config_maps = kubectl(cluster.kubeconfig, "get", "configmaps", "-n", namespace, "-o", "json")
    (in_cluster_token,) = gitlab.runners
    assert in_cluster_token not in config_maps

    # Byte for byte the trace the same runner prints from outside the cluster, with a kubeconfig.
    # The in-cluster runner goes first, or it might take this job too.
    # (In threads: the fake GitLab answers the stopping runner meanwhile.)
    await asyncio.to_thread(
        kubectl, cluster.kubeconfig, "delete", "deployment", "-n", namespace, "kuberunner"
    )
    await asyncio.to_thread(
        kubectl, cluster.kubeconfig, "wait", "--for=delete", "pod", "-n", namespace, pod["metadata"]["name"]
    )
    reference = gitlab.enqueue(job_spec())
    outside = gitlab.add_runner()
    config = tmp_path / "config.toml"
    config.write_text(
        f'concurrent = 4\ncheck_interval = 1\n[[runners]]\nname = "kuberunner"\n'
        f'url = "{gitlab.base_url}"\ntoken = "{outside.token}"\nexecutor = "kubernetes"\n'
        f'[runners.kubernetes]\nnamespace = "{namespace}"\nlog_transport = "{transport}"\n'
        f'image = "{HELPER_IMAGE}"\nhelper_image = "{HELPER_IMAGE}"\n'
    )
    host_runner = RunnerProcess(cluster, config)
    try:
        await finished(reference, host_runner, within=120)
    finally:
        assert await host_runner.stop() == 0
    assert comparable(job.text).replace(str(job.id).encode(), b"ID") == comparable(reference.text).replace(
        str(reference.id).encode(), b"ID"
    )
