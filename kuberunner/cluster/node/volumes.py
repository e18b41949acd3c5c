"""What a container sees of API objects: its volumes (as host directories) and its environment.

The kubelet calls these before starting a container. A secret or configMap that does not exist yet
raises `NotReady`, and the kubelet keeps the pod in ContainerCreating and tries again, as a real
kubelet does; a spec the node cannot satisfy raises `ConfigError`.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from pathlib import Path
from typing import Any

from kuberunner.cluster.contracts import ObjectStore, RawObject
from kuberunner.cluster.node import sandbox
from kuberunner.cluster.node.runtime import Mount

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_MODE = 0o644


class NotReady(Exception):
    """A referenced object is missing: wait and retry. `reason` is the waiting reason to show."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ConfigError(Exception):
    """The container's spec cannot be satisfied (CreateContainerConfigError)."""


def _object_data(store: ObjectStore, resource: str, namespace: str, name: str) -> dict[str, bytes] | None:
    obj = store.get(resource, namespace, name)
    if obj is None:
        return None
    data: dict[str, bytes] = {}
    if resource == "secrets":
        for key, value in (obj.get("data") or {}).items():
            try:
                data[key] = base64.b64decode(str(value), validate=False)
            except ValueError:
                data[key] = b""
        for key, value in (obj.get("stringData") or {}).items():
            data[key] = str(value).encode()
    else:
        for key, value in (obj.get("data") or {}).items():
            data[key] = str(value).encode()
        for key, value in (obj.get("binaryData") or {}).items():
            data[key] = base64.b64decode(str(value))
    return data


def _safe_join(base: Path, relative: str) -> Path:
    target = (base / relative).resolve()
    if not str(target).startswith(str(base.resolve()) + os.sep):
        raise ConfigError(f"path {relative!r} escapes the volume")
    return target


def _own(path: Path, owner: int | None) -> None:
    if owner is not None:
        os.lchown(path, owner, owner)


def _materialise(
    volume: RawObject, kind: str, store: ObjectStore, namespace: str, target: Path, owner: int | None
) -> None:
    source = volume[kind] or {}
    resource = "secrets" if kind == "secret" else "configmaps"
    name = str(source.get("secretName") if kind == "secret" else source.get("name"))
    data = _object_data(store, resource, namespace, name)
    optional = bool(source.get("optional"))
    if data is None and not optional:
        singular = "secret" if kind == "secret" else "configmap"
        raise NotReady(
            "ContainerCreating",
            f'MountVolume.SetUp failed for volume "{volume["name"]}" : {singular} "{name}" not found',
        )
    data = data or {}
    default_mode = int(source.get("defaultMode", DEFAULT_MODE))
    shutil.rmtree(target, ignore_errors=True)
    # A secret's files are its container root's alone, on the host as inside (group and other bits
    # dropped); a configMap keeps the modes it asks for.
    private = kind == "secret"
    target.mkdir(parents=True, mode=0o700)
    if not private:
        os.chmod(target, 0o755)
    _own(target, owner)
    items = source.get("items")
    files: list[tuple[str, bytes, int]] = []
    if items:
        for item in items:
            key = str(item.get("key"))
            if key not in data:
                if optional:
                    continue
                raise NotReady("ContainerCreating", f"references non-existent {kind} key: {key}")
            files.append((str(item.get("path", key)), data[key], int(item.get("mode", default_mode))))
    else:
        files = [(key, value, default_mode) for key, value in data.items()]
    for path, content, mode in files:
        file = _safe_join(target, path)
        for parent in reversed(file.relative_to(target.resolve()).parents[:-1]):
            directory = target / parent
            if not directory.is_dir():
                directory.mkdir(mode=0o700 if private else 0o755)
                _own(directory, owner)
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(file, mode & 0o700 if private else mode)
        _own(file, owner)


def _empty_dir(volume: RawObject, target: Path, owner: int | None) -> None:
    """A directory anyone in the pod may write; with `medium: Memory` (and root) a tmpfs of at most
    `sizeLimit` bytes, as a kubelet mounts it."""
    source = volume["emptyDir"] or {}
    target.mkdir(parents=True, exist_ok=True)
    if source.get("medium") == "Memory" and owner is not None and not os.path.ismount(target):
        options = f"mode=0777,uid={owner},gid={owner}"
        if source.get("sizeLimit") is not None:
            try:
                size = sandbox.parse_quantity(str(source["sizeLimit"]))
            except ValueError as exc:
                raise ConfigError(
                    f'emptyDir "{volume["name"]}": bad sizeLimit {source["sizeLimit"]!r}'
                ) from exc
            options += f",size={max(size, 4096)}"
        sandbox.mount("tmpfs", str(target), "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NODEV, options)
    os.chmod(target, 0o777)
    _own(target, owner)


def release_volumes(pod_dir: Path) -> None:
    """Unmount the pod's memory-backed emptyDirs (before its directory is removed)."""
    volumes_dir = pod_dir / "volumes"
    if not volumes_dir.is_dir():
        return
    for entry in volumes_dir.iterdir():
        if os.path.ismount(entry):
            sandbox.umount2(str(entry), sandbox.MNT_DETACH)


def prepare_volumes(
    pod: RawObject, store: ObjectStore, pod_dir: Path, *, owner: int | None = None
) -> dict[str, str]:
    """Host paths of the pod's volumes by name. Raises NotReady or ConfigError.

    `owner` is the host uid of the containers' root: it owns what the pod's volumes hold.
    """
    namespace = pod["metadata"].get("namespace", "default")
    paths: dict[str, str] = {}
    for volume in pod["spec"].get("volumes") or []:
        name = str(volume.get("name"))
        target = pod_dir / "volumes" / name
        if not target.parent.is_dir():
            target.parent.mkdir(mode=0o700)
        if "emptyDir" in volume:
            _empty_dir(volume, target, owner)
        elif "secret" in volume:
            _materialise(volume, "secret", store, namespace, target, owner)
        elif "configMap" in volume:
            _materialise(volume, "configMap", store, namespace, target, owner)
        elif "hostPath" in volume:
            host = volume["hostPath"]
            path = Path(str(host.get("path", "")))
            kind = host.get("type", "")
            if kind in ("DirectoryOrCreate",) and not path.exists():
                path.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate" and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            elif kind in ("Directory", "File") and not path.exists():
                raise NotReady("ContainerCreating", f"hostPath type check failed: {path} does not exist")
            target = path
        else:
            raise ConfigError(f'volume "{name}" has a type this node does not support')
        paths[name] = str(target)
    return paths


def container_mounts(container: RawObject, volumes: dict[str, str]) -> list[Mount]:
    mounts: list[Mount] = []
    for mount in container.get("volumeMounts") or []:
        name = str(mount.get("name"))
        if name not in volumes:
            raise ConfigError(f'cannot find volume "{name}" to mount into container "{container["name"]}"')
        source = volumes[name]
        if mount.get("subPath"):
            source = str(_safe_join(Path(source), str(mount["subPath"])))
            if not Path(source).exists():
                Path(source).mkdir(parents=True)
        mounts.append(
            Mount(source=source, target=str(mount["mountPath"]), read_only=bool(mount.get("readOnly")))
        )
    return mounts


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, `$$` escapes, unknown stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


def _field_value(pod: RawObject, path: str) -> str:
    meta = pod["metadata"]
    values: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path not in values:
        raise ConfigError(f"unsupported fieldRef {path!r}")
    return str(values[path] or "")


def container_env(container: RawObject, pod: RawObject, store: ObjectStore) -> dict[str, str]:
    """The container's environment: defaults, envFrom, env (with valueFrom and `$(VAR)` expansion)."""
    namespace = pod["metadata"].get("namespace", "default")
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": str(pod["metadata"]["name"]), "HOME": "/root"}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix", ""))
        for kind, resource in (("secretRef", "secrets"), ("configMapRef", "configmaps")):
            if kind in source:
                ref = source[kind] or {}
                data = _object_data(store, resource, namespace, str(ref.get("name")))
                if data is None:
                    if ref.get("optional"):
                        continue
                    raise NotReady(
                        "CreateContainerConfigError", f'{resource[:-1]} "{ref.get("name")}" not found'
                    )
                env.update({prefix + k: v.decode(errors="replace") for k, v in data.items()})
    for var in container.get("env") or []:
        name = str(var.get("name"))
        if "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        value_from = var["valueFrom"] or {}
        if "fieldRef" in value_from:
            env[name] = _field_value(pod, str((value_from["fieldRef"] or {}).get("fieldPath")))
            continue
        for kind, resource in (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")):
            if kind not in value_from:
                continue
            ref = value_from[kind] or {}
            data = _object_data(store, resource, namespace, str(ref.get("name")))
            key = str(ref.get("key"))
            if data is None or key not in data:
                if ref.get("optional"):
                    break
                what = (
                    f'{resource[:-1]} "{ref.get("name")}" not found'
                    if data is None
                    else f"couldn't find key {key} in {resource[:-1].capitalize()} "
                    f"{namespace}/{ref.get('name')}"
                )
                raise NotReady("CreateContainerConfigError", what)
            env[name] = data[key].decode(errors="replace")
            break
    return env
