"""Where everything lives, and the few names and addresses that the cluster and the tests share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

K8S_VERSION = "v1.34.4"
"""1.34 is the newest release that runs on cgroup v1 without opting in and that Debian's containerd
1.6 is listed for; the patch level is the newest the Go module proxy serves."""

NODE_NAME = "real-cluster"
NODE_IP = "10.213.0.1"
"""The node's and the API server's address, on a veth interface inside the cluster's network namespace."""
NODE_PREFIX = 24
NODE_SUBNET = "10.213.0.0/24"
POD_SUBNET = "10.213.128.0/20"
"""Pods' addresses, on the CNI bridge inside the same namespace; nothing routes them anywhere else."""
SERVICE_RANGE = "10.213.64.0/24"
SERVICE_IP = "10.213.64.1"

JOB_IMAGE = "localhost/kuberunner/job:1"
"""busybox with sh: the image jobs run in. A tag that is not `latest`, so the kubelet never pulls it."""
HELPER_IMAGE = "localhost/kuberunner/helper:2"
"""busybox plus git, curl and zip, for the `helper` container (sources, artifacts, caches)."""
PAUSE_IMAGE = "localhost/kuberunner/pause:1"

COMPONENTS = ("etcd", "kube-apiserver", "containerd", "kube-controller-manager", "kube-scheduler", "kubelet")
"""In start order; `down` stops them in reverse."""
GO_COMMANDS = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubelet": "k8s.io/kubernetes/cmd/kubelet",
}
CGROUP_PARENT = "real-cluster"
"""The kubelet's cgroupRoot, in every cgroup v1 hierarchy; `down` removes it."""
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
"""Inside the cluster's mount namespace, where /run is a tmpfs of its own."""


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        """Pid files: removed by `down`."""
        return self.root / "run"

    @property
    def state(self) -> Path:
        """etcd's data, containerd's root, the kubelet's root: removed by `down`, so each `up` is fresh."""
        return self.root / "state"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.config / "admin.kubeconfig"

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    def kubeconfig(self, user: str) -> Path:
        return self.config / f"{user}.kubeconfig"

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"
