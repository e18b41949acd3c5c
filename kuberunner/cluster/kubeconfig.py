"""The kubeconfig that points kubectl, the Python clients and `kuberunner exec` at the server.

Written by hand (JSON is valid YAML, but people read this file): one cluster with the server's CA,
one token user, one context whose namespace is `default`, all named `kuberunner`.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

NAME = "kuberunner"


def render(*, server: str, ca_pem: bytes, token: str, namespace: str = "default") -> str:
    ca = base64.b64encode(ca_pem).decode("ascii")
    # json.dumps quotes each scalar safely for YAML.
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: {NAME}\n"
        "  cluster:\n"
        f"    server: {json.dumps(server)}\n"
        f"    certificate-authority-data: {ca}\n"
        "users:\n"
        f"- name: {NAME}\n"
        "  user:\n"
        f"    token: {json.dumps(token)}\n"
        "contexts:\n"
        f"- name: {NAME}\n"
        "  context:\n"
        f"    cluster: {NAME}\n"
        f"    user: {NAME}\n"
        f"    namespace: {json.dumps(namespace)}\n"
        f"current-context: {NAME}\n"
        "preferences: {}\n"
    )


def write(path: Path, *, server: str, ca_pem: bytes, token: str) -> Path:
    """Write atomically with mode 0600 (it holds a credential)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(render(server=server, ca_pem=ca_pem, token=token))
    os.replace(tmp, path)
    return path
