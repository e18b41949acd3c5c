"""Images without a registry: OCI image-layout tars that `ctr images import` takes as they are.

One uncompressed layer (so its digest is its diff_id), a config, a manifest and an index whose
`io.containerd.image.name` annotation is the image's full name. Entries carry mtime 0 so the same
inputs give the same digests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path

from .proc import Failure

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"


class Layer:
    """A root file system being written into an uncompressed tar, parents before children."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buffer, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 - closed by finish()
        self._seen: set[str] = set()

    def directory(self, path: str, mode: int = 0o755, uid: int = 0) -> None:
        path = path.strip("/")
        if not path or path in self._seen:
            return
        self.directory(os.path.dirname(path))
        info = tarfile.TarInfo(path)
        info.uid = info.gid = uid
        self._add(info, tarfile.DIRTYPE, mode)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        if path in self._seen:
            return
        self.directory(os.path.dirname(path))
        info = tarfile.TarInfo(path)
        info.size = len(data)
        self._add(info, tarfile.REGTYPE, mode, io.BytesIO(data))

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        if path in self._seen:
            return
        self.directory(os.path.dirname(path))
        info = tarfile.TarInfo(path)
        info.linkname = target
        self._add(info, tarfile.SYMTYPE, 0o777)

    def copy(self, host_path: Path, image_path: str | None = None) -> None:
        """A host file at `image_path` (default: the same path), following symlinks to the content."""
        self.file(image_path or str(host_path), host_path.read_bytes(), os.stat(host_path).st_mode & 0o7777)

    def copy_tree(self, host_dir: Path) -> None:
        for dirpath, dirnames, filenames in os.walk(host_dir):
            self.directory(dirpath)
            for name in sorted(dirnames + filenames):
                full = Path(dirpath) / name
                if full.is_symlink():
                    self.symlink(str(full), os.readlink(full))
                elif full.is_file():
                    self.copy(full)

    def _add(self, info: tarfile.TarInfo, kind: bytes, mode: int, data: io.BytesIO | None = None) -> None:
        info.type = kind
        info.mode = mode
        info.mtime = 0
        self._tar.addfile(info, data)
        self._seen.add(info.name)

    def finish(self) -> bytes:
        self._tar.close()
        return self._buffer.getvalue()


def busybox_layer() -> Layer:
    layer = Layer()
    for path in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "proc", "sys", "dev", "var", "home"):
        layer.directory(path, 0o700 if path == "root" else 0o755)
    layer.directory("tmp", 0o1777)
    layer.copy(Path("/bin/busybox"), "bin/busybox")
    applets = subprocess.run(["/bin/busybox", "--list-full"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "bin/busybox":
            layer.symlink(applet, "/bin/busybox")
    layer.file("etc/passwd", PASSWD.encode())
    layer.file("etc/group", GROUP.encode())
    return layer


def _libraries(binary: Path) -> list[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        for part in parts:
            if part.startswith("/"):
                found.append(Path(part))
    return found


HELPER_TOOLS = ("/usr/bin/git", "/usr/bin/curl", "/usr/bin/zip")
"""What the helper container runs besides busybox: git for sources, curl and zip for artifacts and caches."""


def _elf(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(4) == b"\x7fELF"


def add_helper_tools(layer: Layer) -> None:
    """Debian's git, curl and zip with the libraries they link, copied from the machine into the image."""
    git_core = Path("/usr/lib/git-core")
    tools = [Path(tool) for tool in HELPER_TOOLS]
    missing = [str(tool) for tool in tools if not tool.is_file()]
    if missing:
        raise Failure("the helper image needs " + ", ".join(missing) + " (apt-get install git curl zip)")
    binaries = [*tools, *(p for p in git_core.iterdir() if p.is_file() and not p.is_symlink())]
    libraries: set[Path] = set()
    for binary in binaries:
        if _elf(binary):
            libraries.update(_libraries(binary))
    for tool in tools:
        layer.copy(tool)
    layer.copy_tree(git_core)
    templates = Path("/usr/share/git-core/templates")
    if templates.is_dir():
        layer.copy_tree(templates)
    for library in sorted(libraries):
        layer.copy(library)


def write_oci(layer_bytes: bytes, name: str, config: Mapping[str, object], out: Path) -> None:
    def blob(data: bytes) -> tuple[str, int]:
        return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)

    layer_digest, layer_size = blob(layer_bytes)
    image_config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        },
        sort_keys=True,
    ).encode()
    config_digest, config_size = blob(image_config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": layer_size,
                }
            ],
        },
        sort_keys=True,
    ).encode()
    manifest_digest, manifest_size = blob(manifest)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "annotations": {"io.containerd.image.name": name},
                }
            ],
        }
    ).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        entries = [
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", index),
            *(
                (f"blobs/sha256/{d.split(':')[1]}", b)
                for d, b in (
                    (layer_digest, layer_bytes),
                    (config_digest, image_config),
                    (manifest_digest, manifest),
                )
            ),
        ]
        for path, data in entries:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    partial.rename(out)


def build_images(images: Path, pause_binary: Path, names: dict[str, str]) -> list[Path]:
    """The job, helper and pause image tars under `images` (built once; `names` maps role to name)."""
    made = []
    shell = {"Env": [PATH_ENV], "Cmd": ["sh"]}
    for role, name in names.items():
        # Named after the image: a new tag (new contents) is a new file, built afresh.
        out = images / (name.replace("/", "_").replace(":", "_") + ".tar")
        made.append(out)
        if out.exists():
            continue
        if role == "pause":
            layer = Layer()
            layer.copy(pause_binary, "pause")
            write_oci(layer.finish(), name, {"Env": [PATH_ENV], "Entrypoint": ["/pause"]}, out)
        elif role == "job":
            write_oci(busybox_layer().finish(), name, shell, out)
        elif role == "helper":
            layer = busybox_layer()
            add_helper_tools(layer)
            write_oci(layer.finish(), name, shell, out)
        else:
            raise Failure(f"unknown image role {role}")
    return made
