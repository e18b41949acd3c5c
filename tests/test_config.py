"""GitLab Runner's config.toml as a GitLab Runner user writes it, and one-line errors for bad ones."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kuberunner.config import KubernetesSettings, RunnerConfig, RunnerEntry, load_runner_config
from kuberunner.errors import BadInput, ConfigFileError
from kuberunner.podconfig import ContainerResources, PodOptions

FULL = """
concurrent = 4
check_interval = 3          # GitLab Runner keys we do not use are accepted

[[runners]]
  name = "k8s"
  url = "https://gitlab.example.com"
  token = "glrt-abc"
  executor = "kubernetes"
  environment = ["A=1", "B=two=2"]
  output_limit = 1024
  tls-ca-file = "/etc/gitlab-runner/certs/ca.crt"
  gitlab_call_timeout = 2.5
  final_update_timeout = 60
  [runners.kubernetes]
    host = "https://127.0.0.1:6443"
    cert_file = "/etc/k/cert.pem"
    key_file = "/etc/k/key.pem"
    ca_file = "/etc/k/ca.pem"
    bearer_token = "tok"
    namespace = "ci"
    image = "alpine:3"
    helper_image = "helper:1"
    poll_interval = 1
    poll_timeout = 60
    log_transport = "kubelet"
    memory_limit = "1Gi"
    privileged = false
  [runners.feature_flags]
    FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_full_file(tmp_path: Path) -> None:
    config = load_runner_config(write(tmp_path, FULL))
    assert config == RunnerConfig(
        concurrent=4,
        runners=(
            RunnerEntry(
                name="k8s",
                url="https://gitlab.example.com",
                token="glrt-abc",
                executor="kubernetes",
                environment=("A=1", "B=two=2"),
                kubernetes=KubernetesSettings(
                    host="https://127.0.0.1:6443",
                    cert_file="/etc/k/cert.pem",
                    key_file="/etc/k/key.pem",
                    ca_file="/etc/k/ca.pem",
                    bearer_token="tok",
                    namespace="ci",
                    image="alpine:3",
                    helper_image="helper:1",
                    poll_interval=1,
                    poll_timeout=60,
                    log_transport="kubelet",
                    output_limit=1024,
                    memory_limit="1Gi",
                    pod=PodOptions(
                        resources={
                            "build": ContainerResources(limits={"memory": "1Gi"}),
                            "helper": ContainerResources(),
                            "service": ContainerResources(),
                            "pod": ContainerResources(),
                        },
                        privileged=False,
                        container_security_context={"build": {}, "helper": {}, "service": {}},
                    ),
                ),
                feature_flags={"FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY": True},
                tls_ca_file="/etc/gitlab-runner/certs/ca.crt",
                gitlab_call_timeout=2.5,
                final_update_timeout=60.0,
            ),
        ),
    )


def test_defaults_follow_gitlab_runner(tmp_path: Path) -> None:
    config = load_runner_config(
        write(tmp_path, '[[runners]]\nname = "x"\n[runners.kubernetes]\nnamespace = ""\n')
    )
    settings = config.runners[0].kubernetes
    assert config.concurrent == 1
    assert (settings.host, settings.namespace, settings.log_transport, settings.output_limit) == (
        None,
        "default",
        "file",
        4096,
    )
    assert (settings.poll_interval, settings.poll_timeout, settings.retry_limit) == (3, 180, 5)
    entry = config.runners[0]
    assert (entry.tls_ca_file, entry.gitlab_call_timeout, entry.final_update_timeout) == (None, 30.0, 300.0)


def test_output_limit_under_kubernetes_wins(tmp_path: Path) -> None:
    text = "[[runners]]\noutput_limit = 10\n[runners.kubernetes]\noutput_limit = 20\n"
    assert load_runner_config(write(tmp_path, text)).runners[0].kubernetes.output_limit == 20


def test_the_local_cache_listens_on_loopback_unless_told_where(tmp_path: Path) -> None:
    text = '[[runners]]\n[runners.cache]\nType = "local"\n'
    assert load_runner_config(write(tmp_path, text)).runners[0].cache.listen_address == "127.0.0.1"
    text += '[runners.cache.local]\nListenAddress = "10.213.0.1"\n'
    assert load_runner_config(write(tmp_path, text)).runners[0].cache.listen_address == "10.213.0.1"


def test_an_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    assert load_runner_config(write(tmp_path, "")) == RunnerConfig(concurrent=1, runners=())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            'concurrent = "4"', "config.toml: key 'concurrent': expected an integer", id="concurrent-string"
        ),
        pytest.param(
            "concurrent = true", "config.toml: key 'concurrent': expected an integer", id="concurrent-bool"
        ),
        pytest.param(
            "concurrent = 0", "config.toml: key 'concurrent': must be at least 1", id="concurrent-zero"
        ),
        pytest.param("runners = 3", "config.toml: key 'runners': expected a list", id="runners-not-list"),
        pytest.param(
            "runners = [1]", "config.toml: key 'runners[0]': expected a table ([[runners]])", id="runner-int"
        ),
        pytest.param(
            "[[runners]]\nname = 1", "config.toml: key 'runners[0].name': expected a string", id="name"
        ),
        pytest.param(
            "[[runners]]\n[runners.kubernetes]\nhost = 5",
            "config.toml: key 'runners[0].kubernetes.host': expected a string",
            id="host",
        ),
        pytest.param(
            '[[runners]]\n[[runners]]\n[runners.kubernetes]\npoll_timeout = "3m"',
            "config.toml: key 'runners[1].kubernetes.poll_timeout': expected an integer",
            id="second-runner",
        ),
        pytest.param(
            '[[runners]]\n[runners.kubernetes]\nlog_transport = "logs"',
            "config.toml: key 'runners[0].kubernetes.log_transport': "
            "expected 'file' or 'kubelet', not 'logs'",
            id="log-transport",
        ),
        pytest.param(
            '[[runners]]\n[runners.kubernetes]\ncert_file = "c"',
            "config.toml: key 'runners[0].kubernetes.cert_file': "
            "cert_file and key_file must be given together",
            id="cert-without-key",
        ),
        pytest.param(
            "[[runners]]\noutput_limit = 0",
            "config.toml: key 'runners[0].output_limit': must be a positive number of KiB",
            id="output-limit-zero",
        ),
        pytest.param(
            '[[runners]]\nenvironment = ["NOEQUALS"]',
            "config.toml: key 'runners[0].environment[0]': expected a string KEY=VALUE",
            id="environment",
        ),
        pytest.param(
            '[[runners]]\n[runners.feature_flags]\nFF_X = "yes"',
            "config.toml: key 'runners[0].feature_flags.FF_X': expected true or false",
            id="feature-flag",
        ),
        pytest.param(
            "[[runners]]\ngitlab_call_timeout = 0",
            "config.toml: key 'runners[0].gitlab_call_timeout': expected a number of seconds above 0 "
            "(at most 86400)",
            id="call-timeout-zero",
        ),
        pytest.param(
            '[[runners]]\nfinal_update_timeout = "5m"',
            "config.toml: key 'runners[0].final_update_timeout': expected a number of seconds above 0 "
            "(at most 86400)",
            id="final-update-timeout-string",
        ),
        pytest.param(
            "[[runners]]\ntls-ca-file = 1",
            "config.toml: key 'runners[0].tls-ca-file': expected a string",
            id="tls-ca-file",
        ),
        pytest.param(
            "[[runners]]\nkubernetes = 1",
            "config.toml: key 'runners[0].kubernetes': expected a table",
            id="table",
        ),
        pytest.param(
            "concurrent = 1\n[[runners]\n",
            "config.toml:2: invalid TOML: Expected ']]' at the end of an array declaration",
            id="toml-syntax",
        ),
        pytest.param(
            "a = 1\na = 2\n", "config.toml:2: invalid TOML: Cannot overwrite a value", id="toml-duplicate"
        ),
    ],
)
def test_errors_are_one_line_naming_the_key_or_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigFileError) as caught:
        load_runner_config(path)
    assert str(caught.value) == f"{tmp_path}/{expected}"
    assert isinstance(caught.value, BadInput)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as caught:
        load_runner_config(tmp_path / "nope.toml")
    assert str(caught.value) == f"{tmp_path}/nope.toml: no such file"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'concurrent = 1\nname = "\xff"\n')
    with pytest.raises(ConfigFileError) as caught:
        load_runner_config(path)
    assert str(caught.value) == f"{path}:2: is not valid UTF-8"
