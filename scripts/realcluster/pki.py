"""The cluster's certificates and kubeconfigs, made with openssl once per REAL_CLUSTER_DIR.

ECDSA P-256 keys throughout (quick to make, accepted everywhere in Kubernetes). The admin user is in
`system:masters`, so no binding is needed before the API server is up.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from .layout import NODE_IP, NODE_NAME, SERVICE_IP, Layout
from .proc import run


@dataclass(frozen=True, slots=True)
class Cert:
    name: str
    subject: str
    usage: str  # extendedKeyUsage
    sans: str = ""


CLIENTS = (
    Cert("admin", "/O=system:masters/CN=kubernetes-admin", "clientAuth"),
    Cert("controller-manager", "/CN=system:kube-controller-manager", "clientAuth"),
    Cert("scheduler", "/CN=system:kube-scheduler", "clientAuth"),
    Cert("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth"),
    Cert("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "clientAuth"),
)
SERVING = Cert(
    "apiserver",
    "/CN=kube-apiserver",
    "serverAuth",
    # 127.0.0.1 and localhost: a fault proxy on loopback in the namespace forwards to the API server.
    f"IP:{NODE_IP},IP:{SERVICE_IP},IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
    "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local",
)


def _key(path: Path) -> None:
    run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path)], quiet=True)
    os.chmod(path, 0o600)


def _sign(pki: Path, cert: Cert) -> None:
    key, csr, crt, ext = (pki / f"{cert.name}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
    _key(key)
    run(["openssl", "req", "-new", "-key", str(key), "-subj", cert.subject, "-out", str(csr)], quiet=True)
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={cert.usage}",
    ]
    if cert.sans:
        lines.append(f"subjectAltName={cert.sans}")
    ext.write_text("\n".join(lines) + "\n")
    run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(pki / "ca.crt"),
            "-CAkey",
            str(pki / "ca.key"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            str(ext),
            "-out",
            str(crt),
        ],
        quiet=True,
    )
    csr.unlink()
    ext.unlink()


def make_pki(layout: Layout) -> None:
    pki = layout.pki
    if (pki / "done").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    _key(pki / "ca.key")
    run(
        [
            "openssl",
            "req",
            "-x509",
            "-new",
            "-key",
            str(pki / "ca.key"),
            "-subj",
            "/CN=real-cluster-ca",
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out",
            str(pki / "ca.crt"),
        ],
        quiet=True,
    )
    for cert in (SERVING, *CLIENTS):
        _sign(pki, cert)
    _key(pki / "sa.key")
    run(["openssl", "ec", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")], quiet=True)
    (pki / "done").write_text("")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig_yaml(*, server: str, ca: str, user: str, credentials: dict[str, str]) -> str:
    """A kubeconfig in block YAML, as kubectl writes one (every value here is a plain scalar: base64,
    a URL, a name), since tools that round-trip YAML may not take JSON."""
    lines = [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: real-cluster",
        "  cluster:",
        f"    server: {server}",
        f"    certificate-authority-data: {ca}",
        "users:",
        f"- name: {user}",
        "  user:",
        *(f"    {key}: {value}" for key, value in credentials.items()),
        "contexts:",
        "- name: real-cluster",
        "  context:",
        "    cluster: real-cluster",
        f"    user: {user}",
        "current-context: real-cluster",
    ]
    return "\n".join(lines) + "\n"


def write_kubeconfigs(layout: Layout) -> None:
    """One kubeconfig per client certificate, mode 0600: they hold keys."""
    layout.config.mkdir(parents=True, exist_ok=True)
    for cert in CLIENTS:
        text = kubeconfig_yaml(
            server=f"https://{NODE_IP}:6443",
            ca=_b64(layout.pki / "ca.crt"),
            user=cert.name,
            credentials={
                "client-certificate-data": _b64(layout.pki / f"{cert.name}.crt"),
                "client-key-data": _b64(layout.pki / f"{cert.name}.key"),
            },
        )
        path = layout.kubeconfig(cert.name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
