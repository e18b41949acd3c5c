"""The real tier's session cluster: the kubeconfig the switch names, and accounts made in it with RBAC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cli.execution import Cluster
from ruamel.yaml import YAML

KUBECTL = Path(sys.executable).parent / "kubectl"
REAL_KUBECONFIG = os.environ.get("KUBERUNNER_TEST_KUBECONFIG") or None
"""The switch (tests/conftest.py): the real cluster's admin kubeconfig, or None for the embedded tier."""
TEST_HOST_ADDRESS = (REAL_KUBECONFIG and os.environ.get("KUBERUNNER_TEST_HOST_ADDRESS")) or "127.0.0.1"
"""Where the tests' own servers listen: on the real tier, an address of this machine that pods reach."""
HELPER_IMAGE = (REAL_KUBECONFIG and os.environ.get("KUBERUNNER_TEST_HELPER_IMAGE")) or "alpine:3.20"
"""An image with git and busybox's applets (nc, wget) that the tier's cluster has: on the embedded
tier any name does (it runs the host's file system), on the real one only images it already holds."""


def real_cluster(kubeconfig: Path, root: Path) -> Cluster:
    """The real cluster as the tests see it: no process of ours, no state directory to look into."""
    return Cluster(kubeconfig, root / "state", None)


NO_EXEC_RULES = [
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["get", "list", "watch", "create", "delete", "patch"],
    },
    {"apiGroups": [""], "resources": ["pods/attach"], "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get", "list", "watch", "create", "delete", "patch"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
]
"""What a CI cluster that forbids exec typically grants a runner: no `pods/exec` anywhere."""


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def service_account_kubeconfig(admin: Path, name: str, rules: list[dict[str, list[str]]], out: Path) -> Path:
    """A ServiceAccount in `default` bound to a Role with `rules`, and a kubeconfig using its token."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name}}
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        {**role, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "default"}],
        },
    ]
    kubectl(
        admin,
        "apply",
        "-n",
        "default",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )
    token = kubectl(admin, "create", "token", name, "-n", "default", "--duration", "24h").strip()
    config = YAML(typ="safe").load(admin.read_text())
    cluster = config["clusters"][0]
    written = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [
            {"name": name, "context": {"cluster": cluster["name"], "user": name, "namespace": "default"}}
        ],
        "current-context": name,
    }
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False  # block style, as kubectl writes: the fault proxy rewrites it
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        yaml.dump(written, file)
    return out
