"""`[runners.kubernetes]` pod keys from config.toml (issue 15): GitLab Runner's names and forms are read
into `PodOptions`; a wrong key or value is one line naming it."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from kuberunner.config import load_runner_config
from kuberunner.errors import ConfigFileError
from kuberunner.podconfig import ContainerResources, ExtraVolume, PodOptions, quantity_value


def options(tmp_path: Path, kubernetes: str) -> PodOptions:
    path = tmp_path / "config.toml"
    path.write_text("[[runners]]\n[runners.kubernetes]\n" + textwrap.dedent(kubernetes), encoding="utf-8")
    return load_runner_config(path).runners[0].kubernetes.pod


def test_resources_of_each_container_kind_and_their_bounds(tmp_path: Path) -> None:
    pod = options(
        tmp_path,
        """
        cpu_limit = "1"
        cpu_limit_overwrite_max_allowed = "2"
        memory_request = "1Gi"
        helper_cpu_request = "100m"
        helper_ephemeral_storage_limit = "1Gi"
        service_memory_limit = "512Mi"
        service_memory_limit_overwrite_max_allowed = "1Gi"
        pod_memory_limit = "4Gi"
        pod_cpu_request_overwrite_max_allowed = "4"
        """,
    )
    assert pod.resources == {
        "build": ContainerResources(limits={"cpu": "1"}, requests={"memory": "1Gi"}, max_limits={"cpu": "2"}),
        "helper": ContainerResources(limits={"ephemeral-storage": "1Gi"}, requests={"cpu": "100m"}),
        "service": ContainerResources(limits={"memory": "512Mi"}, max_limits={"memory": "1Gi"}),
        "pod": ContainerResources(limits={"memory": "4Gi"}, max_requests={"cpu": "4"}),
    }


def test_gitlab_forms_become_kubernetes_forms(tmp_path: Path) -> None:
    pod = options(
        tmp_path,
        """
        pull_policy = "if-not-present"
        allowed_pull_policies = ["always", "if-not-present"]
        dns_policy = "cluster-first-with-host-net"
        [runners.kubernetes.affinity.node_affinity.required_during_scheduling_ignored_during_execution]
          [[runners.kubernetes.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms]]
            [[runners.kubernetes.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms.match_expressions]]
              key = "kubernetes.io/arch"
              operator = "In"
              values = ["amd64"]
        [[runners.kubernetes.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution]]
          topology_key = "kubernetes.io/hostname"
          [runners.kubernetes.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution.label_selector]
            match_labels = { "app_name" = "x" }
        [runners.kubernetes.build_container_security_context]
          run_as_user = 1000
          proc_mount = "unmasked"
          selinux_type = "spc_t"
        """,
    )
    assert (pod.pull_policy, pod.allowed_pull_policies) == (("IfNotPresent",), ("Always", "IfNotPresent"))
    assert pod.dns_policy == "ClusterFirstWithHostNet"
    assert pod.affinity == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                        ]
                    }
                ]
            }
        },
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                # A label's name stays as written, underscores and all.
                {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app_name": "x"}}}
            ]
        },
    }
    assert pod.container_security_context["build"] == {
        "runAsUser": 1000,
        "procMount": "Unmasked",
        "seLinuxOptions": {"type": "spc_t"},
    }


def test_volumes_of_every_kind(tmp_path: Path) -> None:
    pod = options(
        tmp_path,
        """
        [[runners.kubernetes.volumes.host_path]]
          name = "docker"
          mount_path = "/var/run/docker.sock"
          read_only = true
        [[runners.kubernetes.volumes.pvc]]
          name = "cache"
          mount_path = "/cache"
          sub_path = "ci"
        [[runners.kubernetes.volumes.config_map]]
          name = "settings"
          mount_path = "/etc/settings"
          items = { "a.conf" = "conf/a" }
        [[runners.kubernetes.volumes.secret]]
          name = "creds"
          mount_path = "/creds"
        [[runners.kubernetes.volumes.empty_dir]]
          name = "scratch"
          mount_path = "/scratch"
          medium = "Memory"
          size_limit = "1Gi"
        """,
    )
    assert pod.volumes == (
        ExtraVolume(
            {"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}},
            {"name": "docker", "mountPath": "/var/run/docker.sock", "readOnly": True},
        ),
        ExtraVolume(
            {"name": "cache", "persistentVolumeClaim": {"claimName": "cache"}},
            {"name": "cache", "mountPath": "/cache", "subPath": "ci"},
        ),
        ExtraVolume(
            {
                "name": "settings",
                "configMap": {"name": "settings", "items": [{"key": "a.conf", "path": "conf/a"}]},
            },
            {"name": "settings", "mountPath": "/etc/settings"},
        ),
        ExtraVolume(
            {"name": "creds", "secret": {"secretName": "creds"}}, {"name": "creds", "mountPath": "/creds"}
        ),
        ExtraVolume(
            {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
            {"name": "scratch", "mountPath": "/scratch"},
        ),
    )


def test_pod_spec_patches_in_json_and_yaml_and_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "patch.yaml").write_text("- op: add\n  path: /hostname\n  value: ci\n")
    pod = options(
        tmp_path,
        """
        [[runners.kubernetes.pod_spec]]
          name = "inline"
          patch = '{"hostname": "x"}'
          patch_type = "merge"
        [[runners.kubernetes.pod_spec]]
          name = "file"
          patch_path = "patch.yaml"
          patch_type = "json"
        [[runners.kubernetes.pod_spec]]
          patch = "subdomain: ci"
        """,
    )
    assert [(p.name, p.patch_type, p.patch) for p in pod.pod_spec_patches] == [
        ("inline", "merge", {"hostname": "x"}),
        ("file", "json", [{"op": "add", "path": "/hostname", "value": "ci"}]),
        ("pod_spec[2]", "strategic", {"subdomain": "ci"}),
    ]


def test_a_gitlab_runner_file_with_keys_kuberunner_ignores_still_loads(tmp_path: Path) -> None:
    pod = options(
        tmp_path,
        'namespace_per_job = true\nhelper_image_flavor = "ubuntu"\ncleanup_grace_period_seconds = 5\n',
    )
    assert pod.cleanup_grace_period_seconds == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'cpu_limt = "1"',
            "key 'runners[0].kubernetes.cpu_limt': unknown key of [runners.kubernetes]; "
            "did you mean 'cpu_limit'?",
        ),
        (
            'pod_ephemeral_storage_limit = "1Gi"',
            "key 'runners[0].kubernetes.pod_ephemeral_storage_limit': unknown key of [runners.kubernetes]",
        ),
        ('cpu_limit = "lots"', "key 'runners[0].kubernetes.cpu_limit': 'lots' is not a Kubernetes quantity"),
        ("memory_request = 512", "key 'runners[0].kubernetes.memory_request': expected a string"),
        (
            'pull_policy = "sometimes"',
            "key 'runners[0].kubernetes.pull_policy': 'sometimes' is not one of always",
        ),
        ('privileged = "yes"', "key 'runners[0].kubernetes.privileged': expected true or false"),
        ("node_selector = { a = 1 }", "key 'runners[0].kubernetes.node_selector.a': expected a string"),
        (
            'node_tolerations = { a = "Never" }',
            "key 'runners[0].kubernetes.node_tolerations.a': 'Never' is not one of NoSchedule",
        ),
        (
            'namespace_overwrite_allowed = "(("',
            "key 'runners[0].kubernetes.namespace_overwrite_allowed': not a regular",
        ),
        ('dns_policy = "google"', "key 'runners[0].kubernetes.dns_policy': 'google' is not one of none"),
        (
            "cleanup_grace_period_seconds = -1",
            "key 'runners[0].kubernetes.cleanup_grace_period_seconds': expected",
        ),
        (
            '[runners.kubernetes.pod_security_context]\nrun_as_user = "1000"',
            "key 'runners[0].kubernetes.pod_security_context.run_as_user': expected an integer",
        ),
        (
            "[runners.kubernetes.affinity.node_afinity]\nx = 1",
            "key 'runners[0].kubernetes.affinity.node_afinity': unknown key; known: node_affinity",
        ),
        (
            "[[runners.kubernetes.affinity.pod_affinity.preferred_during_scheduling_ignored_during_execution]]"
            '\nweight = "high"',
            "key 'runners[0].kubernetes.affinity.pod_affinity."
            "preferred_during_scheduling_ignored_during_execution[0].weight': expected an integer",
        ),
        (
            "[runners.kubernetes.pod_security_context]\nrun_as_root = true",
            "key 'runners[0].kubernetes.pod_security_context.run_as_root': unknown key; known: run_as_user",
        ),
        (
            '[runners.kubernetes.build_container_security_context.capabilities]\nadd = "ALL"',
            "key 'runners[0].kubernetes.build_container_security_context.capabilities.add': expected a list",
        ),
        (
            '[[runners.kubernetes.volumes.nfs]]\nname = "a"',
            "key 'runners[0].kubernetes.volumes.nfs': unknown volume kind; known: host_path",
        ),
        (
            '[[runners.kubernetes.volumes.empty_dir]]\nname = "Big_Name"\nmount_path = "/x"',
            "key 'runners[0].kubernetes.volumes.empty_dir[0].name': 'Big_Name' is not a valid volume name",
        ),
        (
            '[[runners.kubernetes.volumes.empty_dir]]\nname = "builds"\nmount_path = "/x"',
            "key 'runners[0].kubernetes.volumes.empty_dir[0].name': volume name 'builds' is already used",
        ),
        (
            '[[runners.kubernetes.volumes.pvc]]\nname = "a"\nmount_path = "relative"',
            "key 'runners[0].kubernetes.volumes.pvc[0].mount_path': expected an absolute path",
        ),
        (
            "[[runners.kubernetes.pod_spec]]\npatch = '{}'\npatch_type = \"xml\"",
            "key 'runners[0].kubernetes.pod_spec[0].patch_type': 'xml' is not one of strategic, merge, json",
        ),
        (
            '[[runners.kubernetes.pod_spec]]\npatch = \'{"a": 1}\'\npatch_type = "json"',
            "key 'runners[0].kubernetes.pod_spec[0].patch': a json patch is a list of",
        ),
        (
            "[[runners.kubernetes.pod_spec]]\npatch = '{a: [}'",
            "key 'runners[0].kubernetes.pod_spec[0].patch': neither JSON nor YAML",
        ),
        (
            '[[runners.kubernetes.pod_spec]]\npatch_path = "missing.json"',
            "key 'runners[0].kubernetes.pod_spec[0].patch_path': cannot read",
        ),
        (
            "[[runners.kubernetes.pod_spec]]\npatch = '{}'\npatch_path = \"p.json\"",
            "key 'runners[0].kubernetes.pod_spec[0]': needs exactly one of patch and patch_path",
        ),
    ],
)
def test_bad_keys_are_one_line_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigFileError) as caught:
        options(tmp_path, text + "\n")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'config.toml'}: {expected}"), message


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", "0.5"), ("1", "1"), ("1.5", "1.5"), ("1Ki", "1024"), ("2M", "2000000"), ("1e3", "1000")],
)
def test_quantities(text: str, value: str) -> None:
    assert quantity_value(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "m", "1 Gi", "-1", "1GB", "0x10"])
def test_not_quantities(text: str) -> None:
    assert quantity_value(text) is None
