"""Each component's command line and configuration files: the only place that knows their flags."""

from __future__ import annotations

import json

from .layout import (
    CGROUP_PARENT,
    CONTAINERD_SOCKET,
    NODE_IP,
    NODE_NAME,
    NODE_SUBNET,
    PAUSE_IMAGE,
    POD_SUBNET,
    SERVICE_RANGE,
    Layout,
)


def etcd(layout: Layout) -> list[str]:
    client, peer = "http://127.0.0.1:2379", "http://127.0.0.1:2380"
    return [
        str(layout.bin / "etcd"),
        "--name=real-cluster",
        f"--data-dir={layout.state / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=real-cluster={peer}",
        # A CI cluster lives for one run: durability buys nothing and fsync costs seconds per write burst.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver(layout: Layout) -> list[str]:
    pki = layout.pki
    return [
        str(layout.bin / "kube-apiserver"),
        f"--advertise-address={NODE_IP}",
        "--secure-port=6443",
        "--etcd-servers=http://127.0.0.1:2379",
        f"--service-cluster-ip-range={SERVICE_RANGE}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager(layout: Layout) -> list[str]:
    kubeconfig = layout.kubeconfig("controller-manager")
    return [
        str(layout.bin / "kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={layout.pki / 'sa.key'}",
        f"--root-ca-file={layout.pki / 'ca.crt'}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def scheduler(layout: Layout) -> list[str]:
    kubeconfig = layout.kubeconfig("scheduler")
    return [
        str(layout.bin / "kube-scheduler"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def containerd(layout: Layout) -> list[str]:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    config = f"""version = 2
root = "{layout.state / "containerd"}"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "{CONTAINERD_SOCKET}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # This machine withholds CAP_SYS_RESOURCE even from root, so runc cannot lower a container's
  # oom_score_adj below ours (the kubelet asks -998 for sandboxes): clamp it at ours instead.
  restrict_oom_score_adj = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{layout.config / "cni"}"
"""
    path = layout.config / "containerd.toml"
    path.write_text(config)
    cni = {
        "cniVersion": "0.4.0",
        "name": "real-cluster",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "rc-br0",
                # The gateway is the namespace itself: pods reach the node's address and nothing else,
                # since the namespace has no route out and nothing masquerades.
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    # The node's subnet (tests/gitlab's fake GitLab listens there) and the Service range
                    # (the `kubernetes` Service, see node.IN_NAMESPACE_SETUP); no default route.
                    "routes": [{"dst": NODE_SUBNET}, {"dst": SERVICE_RANGE}],
                    "dataDir": str(layout.state / "cni-ipam"),
                },
            }
        ],
    }
    (layout.config / "cni").mkdir(parents=True, exist_ok=True)
    (layout.config / "cni" / "10-real-cluster.conflist").write_text(json.dumps(cni, indent=1))
    return ["/usr/bin/containerd", f"--config={path}"]


def kubelet(layout: Layout) -> list[str]:
    resolv = layout.config / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "readOnlyPort": 0,
        "authentication": {
            "x509": {"clientCAFile": str(layout.pki / "ca.crt")},
            "webhook": {"enabled": False},
            "anonymous": {"enabled": False},
        },
        # Only the API server (a client certificate from our CA) can reach the kubelet at all.
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_PARENT}",
        "failCgroupV1": False,
        "failSwapOn": False,
        # Nothing can be pulled again: the images exist only because we imported them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "resolvConf": str(resolv),
        "serializeImagePulls": False,
        "podPidsLimit": 4096,
        "maxPods": 110,
    }
    path = layout.config / "kubelet.json"
    path.write_text(json.dumps(config, indent=1))
    return [
        str(layout.bin / "kubelet"),
        f"--config={path}",
        f"--kubeconfig={layout.kubeconfig('kubelet')}",
        f"--root-dir={layout.state / 'kubelet'}",
        f"--node-ip={NODE_IP}",
        f"--hostname-override={NODE_NAME}",
        "--v=1",
    ]


def argv(layout: Layout, name: str) -> list[str]:
    makers = {
        "etcd": etcd,
        "kube-apiserver": apiserver,
        "containerd": containerd,
        "kube-controller-manager": controller_manager,
        "kube-scheduler": scheduler,
        "kubelet": kubelet,
    }
    return makers[name](layout)
