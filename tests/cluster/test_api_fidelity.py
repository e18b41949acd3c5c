"""Real kubectl against a server that must answer as a real Kubernetes 1.34 API server does.

Runs on both tiers (tests/cluster/tier.py): the real cluster judges every expectation here, and the
embedded cluster must give the same answers. Dry runs on every verb, unknown fields, namespace
termination, deletecollection, service accounts, the node, access reviews, OpenAPI v2.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as aio_client
from kubernetes_asyncio import config as aio_config
from kubernetes_asyncio.client.exceptions import ApiException
from real.cluster import NO_EXEC_RULES, REAL_KUBECONFIG, service_account_kubeconfig

from kuberunner.cluster.server import EmbeddedCluster
from tests.cluster.api_helpers import Kubectl
from tests.cluster.tier import Target


def write(tmp_path: Path, name: str, obj: dict[str, Any]) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(obj))
    return str(path)


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def pod(target: Target, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "containers": [{"name": "main", "image": target.image, "command": ["sleep", "3600"]}],
            **spec,
        },
    }


# -- dry runs ---------------------------------------------------------------------------------


async def test_server_dry_run_delete_keeps_the_pod(api_target: Target) -> None:
    await api_target.create(pod(api_target, "web"))
    ran = await api_target.kubectl("delete", "pod", "web", "--dry-run=server")
    assert (ran.rc, ran.out) == (
        0,
        f'pod "web" deleted from {api_target.namespace} namespace (server dry run)\n',
    )
    assert "deletionTimestamp" not in (await api_target.require("pod", "web"))["metadata"]


async def test_server_dry_run_label_patch_replace_apply_change_nothing(
    api_target: Target, tmp_path: Path
) -> None:
    kubectl = api_target.kubectl
    await api_target.create(configmap("c", a="1"))
    before = await api_target.require("cm", "c")
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
    assert await api_target.require("cm", "c") == before
    assert await api_target.get("cm", "n") is None


# -- unknown fields -----------------------------------------------------------------------------


def typo_pod(target: Target) -> dict[str, Any]:
    body = pod(target, "typo")
    body["metadata"]["foo"] = 1
    body["spec"]["containers"][0]["comand"] = ["sh"]
    body["spec"]["unknownspec"] = 3
    return body


async def test_strict_field_validation_rejects_unknown_fields(api_target: Target, tmp_path: Path) -> None:
    ran = await api_target.kubectl("create", "-f", write(tmp_path, "typo", typo_pod(api_target)))
    assert ran.rc == 1
    assert ran.err == (
        f'Error from server (BadRequest): error when creating "{tmp_path}/typo.json": Pod in version "v1" '
        'cannot be handled as a Pod: strict decoding error: unknown field "metadata.foo", unknown field '
        '"spec.containers[0].comand", unknown field "spec.unknownspec"\n'
    )
    assert await api_target.get("pod", "typo") is None


async def test_warn_field_validation_drops_unknown_fields_with_warnings(
    api_target: Target, tmp_path: Path
) -> None:
    kubectl = api_target.kubectl
    ran = await kubectl("create", "-f", write(tmp_path, "typo", typo_pod(api_target)), "--validate=warn")
    assert (ran.rc, ran.out) == (0, "pod/typo created\n")
    assert ran.err == (
        'Warning: unknown field "metadata.foo"\n'
        'Warning: unknown field "spec.containers[0].comand"\n'
        'Warning: unknown field "spec.unknownspec"\n'
    )
    stored = await api_target.require("pod", "typo")
    assert "comand" not in stored["spec"]["containers"][0]
    assert ("foo", "unknownspec") not in (*stored["metadata"], *stored["spec"])
    # kubectl patch sends no fieldValidation: the default is Warn.
    ran = await kubectl("patch", "pod", "typo", "-p", '{"metadata":{"zz":2},"bogus":1}')
    assert (ran.rc, ran.err) == (0, 'Warning: unknown field "bogus"\nWarning: unknown field "metadata.zz"\n')
    assert ran.out == "pod/typo patched (no change)\n"


async def test_ignore_field_validation_drops_silently(api_target: Target, tmp_path: Path) -> None:
    ran = await api_target.kubectl(
        "create", "-f", write(tmp_path, "typo", typo_pod(api_target)), "--validate=false"
    )
    assert (ran.rc, ran.out, ran.err) == (0, "pod/typo created\n", "")
    assert "comand" not in (await api_target.require("pod", "typo"))["spec"]["containers"][0]


async def test_false_flags_are_not_served_back(api_target: Target) -> None:
    """A Go struct drops `false` for the container's stdin/stdinOnce/tty (omitempty): the pod as
    served has no such keys, whether the client sent them false or not at all."""
    body = pod(api_target, "flags")
    body["spec"]["containers"][0].update(stdin=True, stdinOnce=False, tty=False)
    body["spec"]["containers"].append(
        {"name": "quiet", "image": api_target.image, "command": ["sleep", "3600"], "stdin": False}
    )
    await api_target.create(body)
    loud, quiet = (await api_target.require("pod", "flags"))["spec"]["containers"]
    assert ({"stdin", "stdinOnce", "tty"} & loud.keys(), loud["stdin"]) == ({"stdin"}, True)
    assert {"stdin", "stdinOnce", "tty"} & quiet.keys() == set()


# -- namespaces -----------------------------------------------------------------------------------


async def test_namespace_terminates_after_its_pods(api_target: Target) -> None:
    """Its pods get their whole grace period (`sleep` ignores SIGTERM, so they outlive the delete
    until forced); new content is refused meanwhile."""
    kubectl = api_target.kubectl
    team = api_target.name("team")
    assert (await kubectl("create", "ns", team)).rc == 0
    ran = await kubectl("wait", "-n", team, "--for=create", "sa/default", "--timeout=60s", limit=70)
    assert ran.rc == 0, ran.err
    ran = await kubectl("-n", team, "create", "-f", "-", stdin=json.dumps(pod(api_target, "p")).encode())
    assert ran.rc == 0, ran.err
    ran = await kubectl("delete", "ns", team, "--wait=false")
    assert (ran.rc, ran.out) == (0, f'namespace "{team}" deleted\n')
    ran = await kubectl("get", "ns", team, "-o", "jsonpath={.status.phase}")
    assert (ran.rc, ran.out) == (0, "Terminating")
    ran = await kubectl(
        "-n",
        team,
        "wait",
        "--for=jsonpath={.metadata.deletionGracePeriodSeconds}=30",
        "pod/p",
        "--timeout=60s",
        limit=70,
    )
    assert ran.rc == 0, ran.err
    ran = await kubectl("-n", team, "create", "cm", "late", "--from-literal=a=b")
    assert (ran.rc, ran.err) == (
        1,
        'error: failed to create configmap: configmaps "late" is forbidden: unable to create new '
        f"content in namespace {team} because it is being terminated\n",
    )
    ran = await kubectl("-n", team, "delete", "pod", "p", "--grace-period=0", "--force")
    assert ran.rc == 0, ran.err
    ran = await kubectl("wait", "--for=delete", f"ns/{team}", "--timeout=60s", limit=70)
    assert ran.rc == 0, ran.err


async def test_new_namespace_has_default_service_account_and_root_ca(api_target: Target) -> None:
    kubectl = api_target.kubectl
    team = api_target.name("team")
    assert (await kubectl("create", "ns", team)).rc == 0
    try:
        # A real cluster's controllers make both moments later; the embedded one at once.
        for made in ("sa/default", "cm/kube-root-ca.crt"):
            ran = await kubectl("wait", "-n", team, "--for=create", made, "--timeout=60s", limit=70)
            assert ran.rc == 0, ran.err
        ran = await kubectl("-n", team, "get", "sa")
        assert ran.rc == 0, ran.err
        assert [line.split()[:2] for line in ran.out.splitlines()] == [["NAME", "SECRETS"], ["default", "0"]]
        ran = await kubectl("-n", team, "get", "cm", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}")
        assert (ran.rc, ran.out) == (0, api_target.ca_pem.decode())
    finally:
        await kubectl("delete", "ns", team, "--wait=false")


async def test_pods_get_the_default_service_account(api_target: Target, tmp_path: Path) -> None:
    kubectl = api_target.kubectl
    ns = api_target.namespace
    assert (await kubectl("create", "-f", write(tmp_path, "p", pod(api_target, "p")))).rc == 0
    ran = await kubectl("get", "pod", "p", "-o", "jsonpath={.spec.serviceAccountName}/{.spec.serviceAccount}")
    assert (ran.rc, ran.out) == (0, "default/default")
    # DefaultTolerationSeconds admission.
    ran = await kubectl("get", "pod", "p", "-o", "jsonpath={.spec.tolerations[*].key}")
    assert ran.out == "node.kubernetes.io/not-ready node.kubernetes.io/unreachable"
    ran = await kubectl("create", "-f", write(tmp_path, "q", pod(api_target, "q", serviceAccountName="ci")))
    assert ran.rc == 1
    assert ran.err.endswith(
        f'pods "q" is forbidden: error looking up service account {ns}/ci: serviceaccount "ci" not found\n'
    )
    assert (await kubectl("create", "sa", "ci")).rc == 0
    ran = await kubectl("create", "-f", write(tmp_path, "q", pod(api_target, "q", serviceAccountName="ci")))
    assert (ran.rc, ran.out) == (0, "pod/q created\n"), ran.err


# -- deletecollection -------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", ["configmaps", "secrets", "pods", "events"])
async def test_delete_all_with_a_selector(api_target: Target, resource: str) -> None:
    bodies = {
        "configmaps": lambda n: configmap(n),
        "secrets": lambda n: {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n}},
        "pods": lambda n: pod(api_target, n),
        "events": lambda n: {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": n},
            "involvedObject": {"kind": "Pod", "name": "x", "namespace": api_target.namespace},
        },
    }
    for name, labels in (("keep", {"x": "n"}), ("go1", {"x": "y"}), ("go2", {"x": "y"})):
        body = bodies[resource](name)
        body["metadata"]["labels"] = labels
        await api_target.create(body)
    kubectl = api_target.kubectl
    ran = await kubectl("delete", resource, "-l", "x=y", "--grace-period=0", "--force", "--wait=false")
    assert ran.rc == 0, ran.err
    singular = resource.removesuffix("s")
    assert re.findall(rf'{singular} "(\w+)" (?:force )?deleted', ran.out) == ["go1", "go2"]
    ran = await kubectl("get", resource, "-l", "x", "-o", "jsonpath={.items[*].metadata.name}")
    assert (ran.rc, ran.out) == (0, "keep"), ran.err


# -- node and access reviews ---------------------------------------------------------------------


async def test_get_nodes_shows_the_ready_node(api_target: Target) -> None:
    ran = await api_target.kubectl("get", "nodes")
    assert ran.rc == 0, ran.err
    header, row = ran.out.splitlines()
    assert header.split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert re.fullmatch(r"[a-z0-9.-]+\s+Ready\s+<none>\s+\d+[smhd]\w*\s+v1\.\d+\.\d+(-kuberunner)?", row)


@pytest.mark.embedded_only("on a real cluster an admin may delete the node; the embedded one's is read-only")
async def test_the_node_cannot_be_deleted(api_target: Target) -> None:
    ran = await api_target.kubectl("delete", "node", "kuberunner-node")
    assert ran.rc == 1


async def test_auth_can_i_answers_for_an_account_without_exec(tmp_path: Path) -> None:
    """The account: a ServiceAccount whose Role leaves out pods/exec on the real tier, the cluster's
    `--forbid pods/exec` on the embedded one."""
    home = tmp_path / "home"
    home.mkdir()
    if REAL_KUBECONFIG is not None:
        name = f"fid-can-i-{uuid.uuid4().hex[:8]}"
        admin = Path(REAL_KUBECONFIG)
        config = service_account_kubeconfig(admin, name, NO_EXEC_RULES, tmp_path / "sa.kubeconfig")
        try:
            await _check_can_i(Kubectl(config, home))
        finally:
            await Kubectl(admin, home)("delete", "-n", "default", "sa,role,rolebinding", name)
        return
    async with EmbeddedCluster(state_dir=tmp_path / "state", forbid=("pods/exec",)) as cluster:
        await _check_can_i(Kubectl(cluster.kubeconfig_path, home))


async def _check_can_i(kubectl: Kubectl) -> None:
    ran = await kubectl("auth", "can-i", "create", "pods")
    assert (ran.rc, ran.out) == (0, "yes\n"), ran.err
    ran = await kubectl("auth", "can-i", "create", "pods", "--subresource=exec")
    assert (ran.rc, ran.out) == (1, "no\n"), ran.err
    ran = await kubectl("auth", "can-i", "--list")
    assert ran.rc == 0, ran.err
    rows = {line.split()[0]: line.split(" [")[-1] for line in ran.out.splitlines()[1:]}
    assert "pods/exec" not in rows
    # Verbs are printed in the order the rules give them.
    assert set(rows["pods/attach"].rstrip("]").split()) == {"create", "get"}
    assert {"create", "delete", "get", "list", "patch", "watch"} <= set(rows["pods"].rstrip("]").split())


async def test_openapi_v2_is_served(api_target: Target) -> None:
    """kubectl 1.27/1.28 read it before every `apply -f`/`create -f`."""
    ran = await api_target.kubectl("get", "--raw", "/openapi/v2")
    assert ran.rc == 0, ran.err
    document = json.loads(ran.out)
    ran = await api_target.kubectl("get", "--raw", "/version")
    version = json.loads(ran.out)
    info = {"title": "Kubernetes", "version": f"{version['major']}.{version['minor']}"}
    assert (document["swagger"], document["info"]) == ("2.0", info)
    ran = await api_target.kubectl("get", "--raw", "/openapi/v3/api/v1")
    assert json.loads(ran.out)["info"] == info
    assert {
        "emulationMajor",
        "emulationMinor",
        "minCompatibilityMajor",
        "minCompatibilityMinor",
    } <= version.keys()


async def test_kubectl_1_28_creates_applies_and_dry_runs(
    api_target: Target, kubectl_1_28_binary: Path, tmp_path: Path
) -> None:
    """kubectl 1.28 reads OpenAPI v2 (not v3) for `apply -f` and prints its own messages."""
    old = dataclasses.replace(api_target.kubectl, binary=kubectl_1_28_binary)
    ran = await old("create", "-f", write(tmp_path, "c", configmap("c", a="1")))
    assert (ran.rc, ran.out, ran.err) == (0, "configmap/c created\n", "")
    ran = await old("apply", "-f", write(tmp_path, "c", configmap("c", a="2")))
    assert (ran.rc, ran.out) == (0, "configmap/c configured\n"), ran.err
    ran = await old("apply", "-f", write(tmp_path, "web", pod(api_target, "web")))
    assert (ran.rc, ran.out, ran.err) == (0, "pod/web created\n", "")
    ran = await old("apply", "-f", write(tmp_path, "web", pod(api_target, "web")))
    assert (ran.rc, ran.out, ran.err) == (0, "pod/web unchanged\n", "")
    ran = await old("delete", "pod", "web", "--dry-run=server")
    assert (ran.rc, ran.out, ran.err) == (0, 'pod "web" deleted (server dry run)\n', "")
    assert (await api_target.require("cm", "c"))["data"] == {"a": "2"}
    assert "deletionTimestamp" not in (await api_target.require("pod", "web"))["metadata"]


# -- smaller ones ---------------------------------------------------------------------------------


async def test_docker_config_secret_needs_its_key(api_target: Target, tmp_path: Path) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "d1"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {"a": "eA=="},
    }
    ran = await api_target.kubectl("create", "-f", write(tmp_path, "d1", secret))
    assert (ran.rc, ran.err) == (
        1,
        'The Secret "d1" is invalid: data[.dockerconfigjson]: Required value\n',
    )
    secret["data"] = {".dockerconfigjson": "eA=="}
    ran = await api_target.kubectl("create", "-f", write(tmp_path, "d1", secret))
    assert ran.err == (
        'The Secret "d1" is invalid: data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": '
        "invalid character 'x' looking for beginning of value\n"
    )


async def _list_version(target: Target) -> int:
    ran = await target.kubectl("get", "--raw", f"/api/v1/namespaces/{target.namespace}/configmaps")
    assert ran.rc == 0, ran.err
    return int(json.loads(ran.out)["metadata"]["resourceVersion"])


async def test_list_at_a_future_version_asks_for_a_retry(api_target: Target) -> None:
    """Through a client that does not retry (kubectl would, 10 times, honouring Retry-After)."""
    future = await _list_version(api_target) + 1_000_000
    configuration = aio_client.Configuration()
    await aio_config.load_kube_config(
        config_file=str(api_target.kubeconfig), client_configuration=configuration
    )
    async with aio_client.ApiClient(configuration) as api:
        with pytest.raises(ApiException) as caught:
            await aio_client.CoreV1Api(api).list_namespaced_config_map(
                api_target.namespace, resource_version=str(future)
            )
    assert (caught.value.status, caught.value.headers["Retry-After"]) == (504, "1")
    body = json.loads(caught.value.body)
    assert (body["reason"], body["details"]["retryAfterSeconds"]) == ("Timeout", 1)
    assert re.fullmatch(rf"Timeout: Too large resource version: {future}, current: \d+", body["message"])


async def test_list_at_the_next_version_waits_for_it(api_target: Target) -> None:
    """A version not reached yet is waited for (up to 3 s), not refused at once."""
    now = await _list_version(api_target)
    configuration = aio_client.Configuration()
    await aio_config.load_kube_config(
        config_file=str(api_target.kubeconfig), client_configuration=configuration
    )
    async with aio_client.ApiClient(configuration) as api:
        core = aio_client.CoreV1Api(api)
        listing = asyncio.create_task(
            core.list_namespaced_config_map(api_target.namespace, resource_version=str(now + 1))
        )
        await core.create_namespaced_config_map(api_target.namespace, configmap("next"))
        listed = await listing
    assert int(listed.metadata.resource_version) > now


@pytest.mark.embedded_only(
    "a real server lists a past version from etcd until compaction; the embedded keeps none"
)
async def test_exact_list_of_an_old_version_is_expired(api_target: Target) -> None:
    old = await _list_version(api_target)
    await api_target.create(configmap("later"))
    path = f"/api/v1/namespaces/{api_target.namespace}/configmaps?resourceVersionMatch=Exact&resourceVersion="
    ran = await api_target.kubectl("get", "--raw", path + str(old))
    assert (ran.rc, ran.err) == (
        1,
        "Error from server (Expired): The resourceVersion for the provided list is too old.\n",
    )
    ran = await api_target.kubectl("get", "--raw", path + str(await _list_version(api_target)))
    assert ran.rc == 0, ran.err


async def test_strict_patches_and_apply_refuse_unknown_fields(api_target: Target, tmp_path: Path) -> None:
    kubectl = api_target.kubectl
    await api_target.create(configmap("p5", a="1"))
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
        f"Error from server: failed to create typed patch object ({api_target.namespace}/p5; "
        "/v1, Kind=ConfigMap): .bogus: field not declared in schema\n",
    )
    assert (await api_target.require("cm", "p5"))["data"] == {"a": "1"}


async def test_managed_fields_follow_each_manager(api_target: Target) -> None:
    kubectl = api_target.kubectl
    assert (await kubectl("create", "cm", "c", "--from-literal=a=b")).rc == 0
    assert (await kubectl("label", "cm", "c", "x=y")).rc == 0
    assert (await kubectl("patch", "cm", "c", "-p", '{"data":{"a":"c"}}')).rc == 0
    ran = await kubectl("get", "cm", "c", "-o", "json", "--show-managed-fields")
    assert ran.rc == 0, ran.err
    entries = json.loads(ran.out)["metadata"]["managedFields"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e.pop("time")) for e in entries)
    # The patch took data.a from kubectl-create, which keeps the map.
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
