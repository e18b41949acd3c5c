"""Cluster settings: kubeconfig files, in-cluster service account, explicit runner settings."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from kuberunner.kube import config
from kuberunner.kube.client import KubeClient
from kuberunner.kube.config import ClusterConfig
from kuberunner.kube.errors import KubeConfigError

from .certs import Pki
from .conftest import TOKEN
from .fakeapi import FakeApi


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_kubeconfig(path: Path, *, cluster: str, user: str, extra_ctx: str = "") -> Path:
    path.write_text(f"""\
apiVersion: v1
kind: Config
current-context: main
contexts:
- name: other
  context: {{cluster: c2, user: u1}}
- name: main
  context:
    cluster: c1
    user: u1
    {extra_ctx}
clusters:
- name: c2
  cluster: {{server: "https://other:6443"}}
- name: c1
  cluster:
{cluster}
users:
- name: u1
  user:
{user}
""")
    return path


async def test_kubeconfig_with_inline_data_reaches_the_tls_server(pki: Pki, tmp_path: Path) -> None:
    fake = FakeApi(token=TOKEN, pki=pki, require_client_cert=True)
    await fake.start()
    fake.add_pod("p1", namespace="ci")
    try:
        path = write_kubeconfig(
            tmp_path / "config",
            cluster=f"    server: {fake.url}/\n    certificate-authority-data: {b64(pki.ca_pem)}",
            user=f"    client-certificate-data: {b64(pki.client_cert_pem)}\n"
                 f"    client-key-data: {b64(pki.client_key_pem)}\n    token: {TOKEN}",
            extra_ctx="namespace: ci",
        )
        cfg = await config.load_kubeconfig(path)
        assert cfg.host == fake.url and cfg.namespace == "ci" and cfg.token == TOKEN
        async with await KubeClient.open(cfg) as c:
            assert (await c.get_pod(c.namespace, "p1"))["metadata"]["namespace"] == "ci"
        assert fake.client_certs == ["runner"]
    finally:
        await fake.stop()


async def test_relative_file_paths_resolve_against_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("x")
    (tmp_path / "tok").write_text("t")
    path = write_kubeconfig(tmp_path / "config", cluster="    server: 10.0.0.1:6443\n"
                            "    certificate-authority: ca.crt\n    insecure-skip-tls-verify: true",
                            user="    tokenFile: tok")
    cfg = await config.load_kubeconfig(path)
    assert cfg == ClusterConfig(host="https://10.0.0.1:6443", ca_file=str(tmp_path / "ca.crt"),
                                token_file=str(tmp_path / "tok"), verify_ssl=False)


async def test_context_can_be_chosen(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", cluster="    server: https://a", user="    token: t")
    assert (await config.load_kubeconfig(path, context="other")).host == "https://other:6443"


async def test_kubeconfig_env_first_entry_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_kubeconfig(tmp_path / "config", cluster="    server: https://first", user="    token: t")
    monkeypatch.setenv("KUBECONFIG", f"{path}:{tmp_path / 'missing'}")
    assert config.default_kubeconfig_exists()
    assert (await config.load_kubeconfig()).host == "https://first"


def test_default_kubeconfig_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert not config.default_kubeconfig_exists()
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("{}")
    assert config.default_kubeconfig_exists()


BAD = {
    "missing-file": (None, "no such kubeconfig file"),
    "bad-yaml": ("clusters: [\n  - {name: x\n", "not valid YAML at line"),
    "not-a-mapping": ("- 1\n- 2\n", "not a kubeconfig"),
    "no-current-context": ("clusters: []\n", "current-context: not set"),
    "unknown-context": ("current-context: nope\ncontexts: []\n", "contexts: no entry named 'nope'"),
    "no-server": ("current-context: m\ncontexts: [{name: m, context: {cluster: c}}]\n"
                  "clusters: [{name: c, cluster: {}}]\n", "clusters[0].cluster.server: missing"),
    "bad-base64": ("current-context: m\ncontexts: [{name: m, context: {cluster: c}}]\n"
                   "clusters: [{name: c, cluster: {server: s, certificate-authority-data: '!!'}}]\n",
                   "clusters[0].cluster.certificate-authority-data: not valid base64"),
    "missing-cert-file": ("current-context: m\ncontexts: [{name: m, context: {cluster: c, user: u}}]\n"
                          "clusters: [{name: c, cluster: {server: s}}]\n"
                          "users: [{name: u, user: {client-certificate: nope.crt, client-key: k}}]\n",
                          "users[0].user.client-certificate:"),
    "exec-plugin": ("current-context: m\ncontexts: [{name: m, context: {cluster: c, user: u}}]\n"
                    "clusters: [{name: c, cluster: {server: s}}]\n"
                    "users: [{name: u, user: {exec: {command: aws}}}]\n",
                    "users[0].user.exec: not supported"),
}


@pytest.mark.parametrize("case", sorted(BAD))
async def test_bad_kubeconfig_gives_one_line_naming_file_and_key(case: str, tmp_path: Path) -> None:
    text, expected = BAD[case]
    path = tmp_path / "kubeconfig"
    if text is not None:
        path.write_text(text)
    with pytest.raises(KubeConfigError) as err:
        await config.load_kubeconfig(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_in_cluster(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert config.in_cluster(environ=env, account_dir=tmp_path) is None  # no token yet
    (tmp_path / "token").write_text("tok")
    (tmp_path / "ca.crt").write_text("ca")
    (tmp_path / "namespace").write_text("ci\n")
    assert config.in_cluster(environ=env, account_dir=tmp_path) == ClusterConfig(
        host="https://10.96.0.1:443", ca_file=str(tmp_path / "ca.crt"),
        token_file=str(tmp_path / "token"), namespace="ci")
    assert config.in_cluster(environ={}, account_dir=tmp_path) is None
    v6 = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    cfg = config.in_cluster(environ=v6, account_dir=tmp_path)
    assert cfg is not None and cfg.host == "https://[fd00::1]:443"


def test_from_runner_settings(pki: Pki) -> None:
    cfg = config.from_runner_settings(host="kube.example:6443", cert_file=str(pki.client_cert),
                                      key_file=str(pki.client_key), ca_file=str(pki.ca_file),
                                      bearer_token="", namespace="")
    assert cfg == ClusterConfig(host="https://kube.example:6443", ca_file=str(pki.ca_file),
                                cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    with pytest.raises(KubeConfigError, match="host: empty"):
        config.from_runner_settings(host=" ", cert_file=None, key_file=None, ca_file=None,
                                    bearer_token=None, namespace=None)
    with pytest.raises(KubeConfigError, match="ca_file: /nope: no such file"):
        config.from_runner_settings(host="h", cert_file=None, key_file=None, ca_file="/nope",
                                    bearer_token=None, namespace=None)
    with pytest.raises(KubeConfigError, match="together"):
        config.from_runner_settings(host="h", cert_file=str(pki.client_cert), key_file=None, ca_file=None,
                                    bearer_token=None, namespace=None)


def test_secrets_stay_out_of_repr() -> None:
    text = repr(ClusterConfig(host="https://h", token="very-secret", key_data=b"PRIVATE"))
    assert "very-secret" not in text and "PRIVATE" not in text
