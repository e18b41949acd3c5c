"""Where the runner's cluster settings come from: a kubeconfig, the in-cluster service account,
or the explicit `[runners.kubernetes]` host/cert/key/ca/token settings.

All three end in one frozen `ClusterConfig`; `client.KubeClient` turns it into connections. We read
kubeconfig files ourselves (a small, well-known schema) so that a bad file gets a one-line message
naming the file and the key. Credential plugins (`user.exec`, `auth-provider`) are not supported:
the message says so rather than failing later with a 401.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from kuberunner.kube.errors import KubeConfigError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class ClusterConfig:
    """How to reach and authenticate to one API server."""

    host: str
    """Base URL, e.g. `https://10.0.0.1:6443`; no trailing slash."""
    ca_file: str | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    """PEM bytes of the CA bundle (kubeconfig `certificate-authority-data`)."""
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = field(default=None, repr=False)
    verify_ssl: bool = True
    namespace: str = "default"
    token_file: str | None = None
    """Read again for every new connection: projected service-account tokens rotate."""
    cert_data: bytes | None = field(default=None, repr=False)
    """PEM client certificate (kubeconfig `client-certificate-data`)."""
    key_data: bytes | None = field(default=None, repr=False)
    """PEM client key (kubeconfig `client-key-data`)."""


def _normalise_host(host: str) -> str:
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "https://" + host
    return host


def from_runner_settings(
    *,
    host: str,
    cert_file: str | None,
    key_file: str | None,
    ca_file: str | None,
    bearer_token: str | None,
    namespace: str | None,
) -> ClusterConfig:
    """The explicit GitLab-style settings (`host`, `cert_file`, `key_file`, `ca_file`, `bearer_token`)."""
    if not host or not host.strip():
        raise KubeConfigError("[runners.kubernetes] host: empty")
    if bool(cert_file) != bool(key_file):
        raise KubeConfigError("[runners.kubernetes] cert_file and key_file must be given together")
    for key, value in (("cert_file", cert_file), ("key_file", key_file), ("ca_file", ca_file)):
        if value and not Path(value).is_file():
            raise KubeConfigError(f"[runners.kubernetes] {key}: {value}: no such file")
    return ClusterConfig(
        host=_normalise_host(host),
        ca_file=ca_file or None,
        cert_file=cert_file or None,
        key_file=key_file or None,
        token=bearer_token or None,
        namespace=namespace or "default",
    )


def in_cluster(
    *, environ: Mapping[str, str] | None = None, account_dir: Path = SERVICE_ACCOUNT_DIR
) -> ClusterConfig | None:
    """The pod's own service account, or None when not running inside a cluster."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token = account_dir / "token"
    if not host or not port or not token.is_file():
        return None
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    ca = account_dir / "ca.crt"
    ns_file = account_dir / "namespace"
    namespace = ns_file.read_text().strip() if ns_file.is_file() else ""
    return ClusterConfig(
        host=f"https://{host}:{port}",
        ca_file=str(ca) if ca.is_file() else None,
        token_file=str(token),
        namespace=namespace or "default",
    )


def kubeconfig_path(environ: Mapping[str, str] | None = None) -> Path:
    """$KUBECONFIG's first entry, else ~/.kube/config (kubectl merges the list; we take the first)."""
    env = os.environ if environ is None else environ
    for entry in env.get("KUBECONFIG", "").split(os.pathsep):
        if entry.strip():
            return Path(entry.strip()).expanduser()
    return Path("~/.kube/config").expanduser()


def default_kubeconfig_exists() -> bool:
    return kubeconfig_path().is_file()


async def load_kubeconfig(path: Path | None = None, context: str | None = None) -> ClusterConfig:
    """Read a kubeconfig; raises `KubeConfigError` with a one-line message naming file and key."""
    return await asyncio.to_thread(_load_kubeconfig, path, context)


def _load_kubeconfig(given: Path | None, context: str | None) -> ClusterConfig:
    path = kubeconfig_path() if given is None else Path(given).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KubeConfigError(f"{path}: no such kubeconfig file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KubeConfigError(f"{path}: cannot read: {exc}") from None
    try:
        doc = YAML(typ="safe").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise KubeConfigError(f"{path}: not valid YAML{where}") from None
    return _KubeconfigReader(path, doc).read(context)


class _KubeconfigReader:
    """Walks one parsed kubeconfig, naming the offending key in every error."""

    def __init__(self, path: Path, doc: Any) -> None:
        self.path = path
        self.doc = doc

    def fail(self, key: str, problem: str) -> KubeConfigError:
        return KubeConfigError(f"{self.path}: {key}: {problem}")

    def read(self, context: str | None) -> ClusterConfig:
        if not isinstance(self.doc, dict):
            raise KubeConfigError(f"{self.path}: not a kubeconfig (expected a mapping)")
        ctx_name = context or self.doc.get("current-context")
        if not ctx_name:
            raise self.fail("current-context", "not set and no context was chosen")
        ctx_key, ctx = self.named("contexts", "context", str(ctx_name))
        cluster_name = ctx.get("cluster")
        if not cluster_name:
            raise self.fail(f"{ctx_key}.cluster", "missing")
        cl_key, cluster = self.named("clusters", "cluster", str(cluster_name))
        user: dict[str, Any] = {}
        us_key = "users[]"
        if ctx.get("user"):
            us_key, user = self.named("users", "user", str(ctx["user"]))
        server = cluster.get("server")
        if not isinstance(server, str) or not server.strip():
            raise self.fail(f"{cl_key}.server", "missing")
        for unsupported in ("exec", "auth-provider", "username"):
            if user.get(unsupported):
                raise self.fail(
                    f"{us_key}.{unsupported}",
                    "not supported; use a token, tokenFile or client certificate",
                )
        cert_file = self.file(user, us_key, "client-certificate")
        key_file = self.file(user, us_key, "client-key")
        cert_data = self.data(user, us_key, "client-certificate-data")
        key_data = self.data(user, us_key, "client-key-data")
        if bool(cert_file or cert_data) != bool(key_file or key_data):
            raise self.fail(us_key, "a client certificate needs both certificate and key")
        token = user.get("token")
        return ClusterConfig(
            host=_normalise_host(server),
            ca_file=self.file(cluster, cl_key, "certificate-authority"),
            ca_data=self.data(cluster, cl_key, "certificate-authority-data"),
            cert_file=cert_file,
            key_file=key_file,
            cert_data=cert_data,
            key_data=key_data,
            token=str(token) if token else None,
            token_file=self.file(user, us_key, "tokenFile"),
            verify_ssl=not bool(cluster.get("insecure-skip-tls-verify")),
            namespace=str(ctx.get("namespace") or "default"),
        )

    def named(self, section: str, inner: str, name: str) -> tuple[str, dict[str, Any]]:
        entries = self.doc.get(section)
        if not isinstance(entries, list):
            raise self.fail(section, "missing or not a list")
        for i, entry in enumerate(entries):
            if isinstance(entry, dict) and entry.get("name") == name:
                body = entry.get(inner)
                key = f"{section}[{i}].{inner}"
                if not isinstance(body, dict):
                    raise self.fail(key, "missing or not a mapping")
                return key, body
        raise self.fail(section, f"no entry named {name!r}")

    def file(self, node: dict[str, Any], key: str, name: str) -> str | None:
        value = node.get(name)
        if not value:
            return None
        p = Path(str(value)).expanduser()
        if not p.is_absolute():  # relative to the kubeconfig, as kubectl resolves it
            p = self.path.parent / p
        if not p.is_file():
            raise self.fail(f"{key}.{name}", f"{p}: no such file")
        return str(p)

    def data(self, node: dict[str, Any], key: str, name: str) -> bytes | None:
        value = node.get(name)
        if not value:
            return None
        try:
            return base64.b64decode("".join(str(value).split()), validate=True)
        except (binascii.Error, ValueError):
            raise self.fail(f"{key}.{name}", "not valid base64") from None
