"""The cluster a fidelity test speaks to: the embedded one, or the real one the switch names.

Fidelity tests state what a client sees from a Kubernetes API server, so they use real clients only
and run on both tiers (tests/conftest.py): on the embedded tier against an `EmbeddedCluster` of their
own, on the real tier in a fresh namespace of the real cluster, removed afterwards. Where the two
answer differently the real one is right; what only the embedded cluster can answer is marked
`embedded_only`.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from real.cluster import HELPER_IMAGE, REAL_KUBECONFIG
from ruamel.yaml import YAML

from kuberunner.cluster.server import EmbeddedCluster
from tests.cluster.api_helpers import FakeKubelet, Kubectl

EMBEDDED_IMAGE = "busybox"
EMBEDDED_OTHER_IMAGE = "busybox:1.37"


@dataclass
class Target:
    """One namespace of one cluster, reached through kubectl bound to that namespace."""

    kubeconfig: Path
    namespace: str
    kubectl: Kubectl
    ca_pem: bytes
    image: str
    """An image the cluster runs without pulling: any name on the embedded tier, the jobs' on the real."""
    image_reported: str
    """What the container status says `image` is: the name fully qualified, as containerd reports it."""
    other_image: str
    other_image_reported: str
    fake_kubelet: FakeKubelet | None = None
    """Only on the embedded tier with a fake kubelet: pods run nothing there."""

    @property
    def real(self) -> bool:
        return REAL_KUBECONFIG is not None

    def name(self, base: str) -> str:
        """A cluster-scoped name (a namespace) that no other test or run uses on a shared cluster."""
        return f"{self.namespace}-{base}" if self.real else base

    async def create(self, obj: dict[str, Any]) -> None:
        ran = await self.kubectl("create", "-f", "-", stdin=json.dumps(obj).encode())
        assert ran.rc == 0, ran.err

    async def get(self, resource: str, name: str) -> dict[str, Any] | None:
        ran = await self.kubectl("get", resource, name, "-o", "json", "--ignore-not-found")
        assert ran.rc == 0, ran.err
        return json.loads(ran.out) if ran.out else None

    async def require(self, resource: str, name: str) -> dict[str, Any]:
        obj = await self.get(resource, name)
        assert obj is not None, f"{resource}/{name} is missing"
        return obj


async def embedded_target(cluster: EmbeddedCluster, home: Path, fake: FakeKubelet | None) -> Target:
    return Target(
        kubeconfig=cluster.kubeconfig_path,
        namespace="default",
        kubectl=Kubectl(cluster.kubeconfig_path, home, "default"),
        ca_pem=cluster.ca_pem,
        image=EMBEDDED_IMAGE,
        image_reported="docker.io/library/busybox:latest",
        other_image=EMBEDDED_OTHER_IMAGE,
        other_image_reported="docker.io/library/busybox:1.37",
        fake_kubelet=fake,
    )


def _real_ca_pem(kubeconfig: Path) -> bytes:
    config = YAML(typ="safe").load(kubeconfig.read_text())
    return base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])


async def real_target(home: Path, image: str) -> AsyncIterator[Target]:
    """A fresh namespace of the real cluster, with its default ServiceAccount (made asynchronously
    there), deleted afterwards without waiting: pods are force-deleted first so nothing lingers."""
    assert REAL_KUBECONFIG is not None
    kubeconfig = Path(REAL_KUBECONFIG)
    namespace = f"fid-{uuid.uuid4().hex[:8]}"
    admin = Kubectl(kubeconfig, home)
    ran = await admin("create", "namespace", namespace)
    assert ran.rc == 0, ran.err
    try:
        ran = await admin("wait", "-n", namespace, "--for=create", "sa/default", "--timeout=60s", limit=70)
        assert ran.rc == 0, ran.err
        yield Target(
            kubeconfig=kubeconfig,
            namespace=namespace,
            kubectl=Kubectl(kubeconfig, home, namespace),
            ca_pem=_real_ca_pem(kubeconfig),
            image=image,
            image_reported=image,
            other_image=HELPER_IMAGE,
            other_image_reported=HELPER_IMAGE,
        )
    finally:
        await admin("delete", "pods", "--all", "-n", namespace, "--grace-period=0", "--force", "--wait=false")
        await admin("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")
