"""Real kubectl against the server where it must answer as a real Kubernetes 1.34 API server does.

Each expectation below was checked against a real 1.34 cluster (scripts/real-cluster): dry runs on
every verb, unknown fields, namespace termination, deletecollection, service accounts, the node,
and `kubectl auth can-i`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from kuberunner.cluster.server import EmbeddedCluster
from tests.cluster.api_helpers import FakeKubelet, Kubectl, pod_manifest


def write(tmp_path: Path, name: str, obj: dict[str, Any]) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(obj))
    return str(path)


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


# -- dry runs ---------------------------------------------------------------------------------


async def test_server_dry_run_delete_keeps_the_pod(kubectl: Kubectl, cluster: EmbeddedCluster) -> None:
    await cluster.store.create("pods", "default", pod_manifest("web"))
    ran = await kubectl("delete", "pod", "web", "--dry-run=server")
    assert (ran.rc, ran.out) == (0, 'pod "web" deleted from default namespace (server dry run)\n')
    pod = cluster.store.get("pods", "default", "web")
    assert pod is not None and "deletionTimestamp" not in pod["metadata"]


async def test_server_dry_run_label_patch_replace_apply_change_nothing(
    kubectl: Kubectl, cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    await cluster.store.create("configmaps", "default", configmap("c", a="1"))
    before = cluster.store.require("configmaps", "default", "c")
    ran = await kubectl("label", "cm", "c", "x=y", "--dry-run=server", "-o", "json")
    assert ran.rc == 0, ran.err
    assert json.loads(ran.out)["metadata"]["labels"] == {"x": "y"}
    ran = await kubectl("patch", "cm", "c", "-p", '{"data":{"a":"2"}}', "--dry-run=server")
    # kubectl prints no dry-run note for patch, against a real server too.
    assert (ran.rc, ran.out) == (0, "configmap/c patched\n"), ran.err
    ran = await kubectl("replace", "-f", write(tmp_path, "c", configmap("c", a="3")), "--dry-run=server")
    assert (ran.rc, ran.out) == (0, "configmap/c replaced (server dry run)\n"), ran.err
    ran = await kubectl("apply", "-f", write(tmp_path, "c", configmap("c", a="4")), "--dry-run=server")
    assert (ran.rc, ran.out) == (0, "configmap/c configured (server dry run)\n"), ran.err
    ran = await kubectl("apply", "-f", write(tmp_path, "n", configmap("n", a="5")), "--dry-run=server")
    assert (ran.rc, ran.out) == (0, "configmap/n created (server dry run)\n"), ran.err
    assert cluster.store.require("configmaps", "default", "c") == before
    assert cluster.store.get("configmaps", "default", "n") is None


# -- unknown fields -----------------------------------------------------------------------------


def typo_pod() -> dict[str, Any]:
    pod = pod_manifest("typo")
    pod["metadata"]["foo"] = 1
    pod["spec"]["containers"][0]["comand"] = ["sh"]
    pod["spec"]["unknownspec"] = 3
    return pod


async def test_strict_field_validation_rejects_unknown_fields(
    kubectl: Kubectl, cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    ran = await kubectl("create", "-f", write(tmp_path, "typo", typo_pod()))
    assert ran.rc == 1
    assert ran.err == (
        f'Error from server (BadRequest): error when creating "{tmp_path}/typo.json": Pod in version "v1" '
        'cannot be handled as a Pod: strict decoding error: unknown field "metadata.foo", unknown field '
        '"spec.containers[0].comand", unknown field "spec.unknownspec"\n'
    )
    assert cluster.store.get("pods", "default", "typo") is None


async def test_warn_field_validation_drops_unknown_fields_with_warnings(
    kubectl: Kubectl, cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    ran = await kubectl("create", "-f", write(tmp_path, "typo", typo_pod()), "--validate=warn")
    assert (ran.rc, ran.out) == (0, "pod/typo created\n")
    assert ran.err == (
        'Warning: unknown field "metadata.foo"\n'
        'Warning: unknown field "spec.containers[0].comand"\n'
        'Warning: unknown field "spec.unknownspec"\n'
    )
    stored = cluster.store.require("pods", "default", "typo")
    assert "comand" not in stored["spec"]["containers"][0]
    assert ("foo", "unknownspec") not in (*stored["metadata"], *stored["spec"])
    # kubectl patch sends no fieldValidation: the default is Warn.
    ran = await kubectl("patch", "pod", "typo", "-p", '{"metadata":{"zz":2},"bogus":1}')
    assert (ran.rc, ran.err) == (0, 'Warning: unknown field "bogus"\nWarning: unknown field "metadata.zz"\n')
    assert ran.out == "pod/typo patched (no change)\n"


async def test_ignore_field_validation_drops_silently(
    kubectl: Kubectl, cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    ran = await kubectl("create", "-f", write(tmp_path, "typo", typo_pod()), "--validate=false")
    assert (ran.rc, ran.out, ran.err) == (0, "pod/typo created\n", "")
    assert "comand" not in cluster.store.require("pods", "default", "typo")["spec"]["containers"][0]


# -- namespaces -----------------------------------------------------------------------------------


async def test_namespace_terminates_after_its_pods(
    kubectl: Kubectl, cluster: EmbeddedCluster, fake_kubelet: FakeKubelet
) -> None:
    fake_kubelet.delete_delay = 1.0
    assert (await kubectl("create", "ns", "team")).rc == 0
    await cluster.store.create("pods", "team", pod_manifest("p"))
    ran = await kubectl("delete", "ns", "team", "--wait=false")
    assert (ran.rc, ran.out) == (0, 'namespace "team" deleted\n')
    ran = await kubectl("get", "ns", "team", "-o", "jsonpath={.status.phase}")
    assert (ran.rc, ran.out) == (0, "Terminating")
    assert fake_kubelet.deleting == [("p", 30)]
    ran = await kubectl("-n", "team", "create", "cm", "late", "--from-literal=a=b")
    assert (ran.rc, ran.err) == (
        1,
        'error: failed to create configmap: configmaps "late" is forbidden: unable to create new '
        "content in namespace team because it is being terminated\n",
    )
    ran = await kubectl("wait", "--for=delete", "ns/team", "--timeout=10s")
    assert ran.rc == 0, ran.err


async def test_new_namespace_has_default_service_account_and_root_ca(
    kubectl: Kubectl, cluster: EmbeddedCluster
) -> None:
    assert (await kubectl("create", "ns", "team")).rc == 0
    ran = await kubectl("-n", "team", "get", "sa")
    assert ran.rc == 0, ran.err
    assert [line.split()[:2] for line in ran.out.splitlines()] == [["NAME", "SECRETS"], ["default", "0"]]
    ran = await kubectl("-n", "team", "get", "cm", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}")
    assert (ran.rc, ran.out) == (0, cluster.ca_pem.decode())


async def test_pods_get_the_default_service_account(
    kubectl: Kubectl, cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    assert (await kubectl("create", "-f", write(tmp_path, "p", pod_manifest("p")))).rc == 0
    ran = await kubectl("get", "pod", "p", "-o", "jsonpath={.spec.serviceAccountName}/{.spec.serviceAccount}")
    assert (ran.rc, ran.out) == (0, "default/default")
    # DefaultTolerationSeconds admission, as on a real cluster.
    ran = await kubectl("get", "pod", "p", "-o", "jsonpath={.spec.tolerations[*].key}")
    assert ran.out == "node.kubernetes.io/not-ready node.kubernetes.io/unreachable"
    ran = await kubectl("create", "-f", write(tmp_path, "q", pod_manifest("q", serviceAccountName="ci")))
    assert ran.rc == 1
    assert ran.err.endswith(
        'pods "q" is forbidden: error looking up service account default/ci: serviceaccount "ci" not found\n'
    )
    assert (await kubectl("create", "sa", "ci")).rc == 0
    ran = await kubectl("create", "-f", write(tmp_path, "q", pod_manifest("q", serviceAccountName="ci")))
    assert (ran.rc, ran.out) == (0, "pod/q created\n"), ran.err


# -- deletecollection -------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", ["configmaps", "secrets", "pods", "events"])
async def test_delete_all_with_a_selector(kubectl: Kubectl, cluster: EmbeddedCluster, resource: str) -> None:
    bodies = {
        "configmaps": lambda n: configmap(n),
        "secrets": lambda n: {"metadata": {"name": n}},
        "pods": lambda n: pod_manifest(n),
        "events": lambda n: {"metadata": {"name": n}, "involvedObject": {"kind": "Pod", "name": "x"}},
    }
    for name, labels in (("keep", {"x": "n"}), ("go1", {"x": "y"}), ("go2", {"x": "y"})):
        body = bodies[resource](name)
        body["metadata"]["labels"] = labels
        await cluster.store.create(resource, "default", body)
    ran = await kubectl("delete", resource, "-l", "x=y", "--grace-period=0", "--force", "--wait=false")
    assert ran.rc == 0, ran.err
    singular = resource.removesuffix("s")
    assert re.findall(rf'{singular} "(\w+)" (?:force )?deleted', ran.out) == ["go1", "go2"]
    left = [o["metadata"]["name"] for o in cluster.store.list_objects(resource, "default")[0]]
    assert "keep" in left and "go1" not in left and "go2" not in left


# -- node and access reviews ---------------------------------------------------------------------


async def test_get_nodes_shows_the_ready_node(kubectl: Kubectl) -> None:
    ran = await kubectl("get", "nodes")
    assert ran.rc == 0, ran.err
    header, row = ran.out.splitlines()
    assert header.split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert re.fullmatch(r"kuberunner-node\s+Ready\s+<none>\s+\d+s\s+v1\.\d+\.\d+-kuberunner", row)
    ran = await kubectl("delete", "node", "kuberunner-node")
    assert ran.rc == 1


async def test_auth_can_i_answers_from_the_forbid_rules(tmp_path: Path) -> None:
    async with EmbeddedCluster(state_dir=tmp_path / "state", forbid=("pods/exec",)) as cluster:
        home = tmp_path / "home"
        home.mkdir()
        kubectl = Kubectl(cluster.kubeconfig_path, home)
        ran = await kubectl("auth", "can-i", "create", "pods")
        assert (ran.rc, ran.out) == (0, "yes\n"), ran.err
        ran = await kubectl("auth", "can-i", "create", "pods", "--subresource=exec")
        assert (ran.rc, ran.out) == (1, "no\n"), ran.err
        ran = await kubectl("auth", "can-i", "--list")
        assert ran.rc == 0, ran.err
        rows = {line.split()[0]: line.split(" [")[-1] for line in ran.out.splitlines()[1:]}
        assert "pods/exec" not in rows  # every verb of it is forbidden
        assert (rows["pods/attach"], rows["pods"]) == (
            "create get]",
            "create delete deletecollection get list patch update watch]",
        )


# -- smaller ones ---------------------------------------------------------------------------------


async def test_docker_config_secret_needs_its_key(kubectl: Kubectl, tmp_path: Path) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "d1"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {"a": "eA=="},
    }
    ran = await kubectl("create", "-f", write(tmp_path, "d1", secret))
    assert (ran.rc, ran.err) == (
        1,
        'The Secret "d1" is invalid: data[.dockerconfigjson]: Required value\n',
    )
    secret["data"] = {".dockerconfigjson": "eA=="}
    ran = await kubectl("create", "-f", write(tmp_path, "d1", secret))
    assert ran.err == (
        'The Secret "d1" is invalid: data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": '
        "invalid character 'x' looking for beginning of value\n"
    )


async def test_exact_list_of_an_old_version_is_expired(kubectl: Kubectl, cluster: EmbeddedCluster) -> None:
    old = cluster.store.resource_version
    await cluster.store.create("configmaps", "default", configmap("later"))
    path = "/api/v1/namespaces/default/configmaps?resourceVersionMatch=Exact&resourceVersion="
    ran = await kubectl("get", "--raw", path + str(old))
    assert (ran.rc, ran.err) == (
        1,
        "Error from server (Expired): The resourceVersion for the provided list is too old.\n",
    )
    ran = await kubectl("get", "--raw", path + str(cluster.store.resource_version))
    assert ran.rc == 0, ran.err
    future = cluster.store.resource_version + 10
    ran = await kubectl("get", "--raw", f"/api/v1/namespaces/default/configmaps?resourceVersion={future}")
    assert (ran.rc, ran.err) == (
        1,
        f"Error from server (Timeout): Timeout: Too large resource version: {future}, "
        f"current: {cluster.store.resource_version}\n",
    )


async def test_strict_patches_and_apply_refuse_unknown_fields(
    kubectl: Kubectl, cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    await cluster.store.create("configmaps", "default", configmap("p5", a="1"))
    ran = await kubectl("apply", "-f", write(tmp_path, "p5", {**configmap("p5", a="2"), "bogus": 1}))
    assert ran.rc == 1
    assert (
        '\nThe request is invalid: patch: Invalid value: "map[bogus:1 data:map[a:2] '
        "metadata:map[annotations:map[kubectl.kubernetes.io/last-applied-configuration:"
    ) in ran.err
    assert ran.err.endswith('strict decoding error: unknown field "bogus"\n')
    ran = await kubectl(
        "apply", "--server-side", "-f", write(tmp_path, "p5", {**configmap("p5"), "bogus": 1})
    )
    assert (ran.rc, ran.err) == (
        1,
        "Error from server: failed to create typed patch object (default/p5; /v1, Kind=ConfigMap): "
        ".bogus: field not declared in schema\n",
    )
    assert cluster.store.require("configmaps", "default", "p5")["data"] == {"a": "1"}


async def test_managed_fields_follow_each_manager(kubectl: Kubectl) -> None:
    assert (await kubectl("create", "cm", "c", "--from-literal=a=b")).rc == 0
    assert (await kubectl("label", "cm", "c", "x=y")).rc == 0
    assert (await kubectl("patch", "cm", "c", "-p", '{"data":{"a":"c"}}')).rc == 0
    ran = await kubectl("get", "cm", "c", "-o", "json", "--show-managed-fields")
    assert ran.rc == 0, ran.err
    entries = json.loads(ran.out)["metadata"]["managedFields"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e.pop("time")) for e in entries)
    # As a real server records them: the patch took data.a from kubectl-create, which keeps the map.
    common = {"apiVersion": "v1", "fieldsType": "FieldsV1", "operation": "Update"}
    assert entries == [
        {**common, "manager": "kubectl-create", "fieldsV1": {"f:data": {}}},
        {
            **common,
            "manager": "kubectl-label",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:x": {}}}},
        },
        {**common, "manager": "kubectl-patch", "fieldsV1": {"f:data": {"f:a": {}}}},
    ]
