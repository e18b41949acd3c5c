"""Building what is missing: Debian's runtime packages, the Go binaries, the pause binary.

The Kubernetes commands come from the `k8s.io/kubernetes` module through a small build module of our own:
k/k's go.mod pins its staging modules at v0.0.0 and replaces them with ./staging paths that a module
download does not have, so our module replaces each of them (read from k/k's own go.mod, never a
hard-coded list) with the published `k8s.io/<name> v0.<minor>.<patch>`. etcd is built from
`go.etcd.io/etcd/server/v3` at the version k/k itself requires.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from .layout import GO_COMMANDS, K8S_VERSION, Layout
from .proc import Failure, run

APT_PACKAGES = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "busybox-static": "/bin/busybox",
    "iptables": "/usr/sbin/iptables",
    "git": "/usr/bin/git",
    "curl": "/usr/bin/curl",
    "zip": "/usr/bin/zip",
}
"""Debian's runtime, each with the file that shows it is installed."""
TOOLS = ("ip", "unshare", "nsenter", "mount", "openssl", "gcc", "ldd")
BUILD_DISK_BYTES = 12 * 2**30
"""Module and build caches of a cold build take 5-8 GB; the binaries another 0.5."""
RUN_DISK_BYTES = 2 * 2**30


def _go_env() -> dict[str, str]:
    # -p=2: the machine has two cores shared with others; nice keeps the tests' timing sane meanwhile.
    return {**os.environ, "GOFLAGS": "-mod=mod -p=2", "CGO_ENABLED": "0", "GOTOOLCHAIN": "auto"}


def binaries_missing(layout: Layout) -> list[str]:
    names = ["etcd", *GO_COMMANDS]
    return [name for name in names if not (layout.bin / name).is_file()]


def preflight(layout: Layout) -> None:
    """One line naming what is missing, before anything slow starts."""
    if os.geteuid() != 0:
        raise Failure("needs root (it creates namespaces, mounts and cgroups); run it with sudo")
    needs_build = bool(binaries_missing(layout))
    if needs_build and shutil.which("go") is None:
        raise Failure("needs Go (`go` is not on PATH) to build Kubernetes " + K8S_VERSION)
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise Failure("needs these commands on PATH: " + ", ".join(missing))
    layout.root.mkdir(parents=True, exist_ok=True)
    need = BUILD_DISK_BYTES if needs_build else RUN_DISK_BYTES
    places = [layout.root] + ([Path.home()] if needs_build else [])
    for place in places:
        free = shutil.disk_usage(place).free
        if free < need:
            raise Failure(f"needs {need / 2**30:.0f} GiB free under {place}, has {free / 2**30:.1f} GiB")


def install_packages() -> None:
    missing = [package for package, path in APT_PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    print("real-cluster: apt-get install " + " ".join(missing), flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env, quiet=True)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env, quiet=True)


def _k8s_gomod(layout: Layout) -> Path:
    out = run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{K8S_VERSION}"],
        cwd=layout.build,
        env=_go_env(),
        capture=True,
    )
    return Path(json.loads(out)["GoMod"])


def k8s_module_dir(layout: Layout) -> Path:
    out = run(
        ["go", "list", "-m", "-json", "k8s.io/kubernetes"], cwd=layout.build, env=_go_env(), capture=True
    )
    return Path(json.loads(out)["Dir"])


def write_build_module(layout: Layout) -> None:
    """go.mod of the build module: k/k, its staging modules replaced by their published twins, tools."""
    layout.build.mkdir(parents=True, exist_ok=True)
    gomod = layout.build / "go.mod"
    if (
        gomod.exists()
        and f"k8s.io/kubernetes {K8S_VERSION}" in gomod.read_text()
        and "tool (" in gomod.read_text()
    ):
        return
    gomod.write_text("module realcluster\n\ngo 1.24.0\n")
    k8s_mod = _k8s_gomod(layout).read_text()
    staging = re.findall(r"^\s*(k8s\.io/[A-Za-z0-9._-]+) => \./staging/", k8s_mod, re.MULTILINE)
    etcd = re.search(r"^\s*go\.etcd\.io/etcd/server/v3 (v\S+)", k8s_mod, re.MULTILINE)
    if not staging or etcd is None:
        raise Failure(f"k8s.io/kubernetes {K8S_VERSION}'s go.mod has no staging replaces or no etcd server")
    published = "v0." + K8S_VERSION.removeprefix("v1.")
    lines = [
        "module realcluster",
        "",
        "go 1.24.0",
        "",
        f"require k8s.io/kubernetes {K8S_VERSION}",
        "",
        "replace (",
    ]
    lines += [f"\t{module} => {module} {published}" for module in staging]
    lines += [")", ""]
    gomod.write_text("\n".join(lines))
    tools = [f"{package}@{K8S_VERSION}" for package in GO_COMMANDS.values()]
    tools.append(f"go.etcd.io/etcd/server/v3@{etcd.group(1)}")
    run(["nice", "-n", "15", "go", "get", "-tool", *tools], cwd=layout.build, env=_go_env(), quiet=True)


def _ldflags() -> str:
    # Without these /version and the node's kubeletVersion say v0.0.0-master+$Format...
    major, minor = K8S_VERSION.removeprefix("v").split(".")[:2]
    values = {
        "gitVersion": K8S_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "gitCommit": "0" * 40,
        "buildDate": "1970-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    return " ".join(flags)


def build_binaries(layout: Layout) -> None:
    missing = binaries_missing(layout)
    if not missing:
        return
    print(
        f"real-cluster: building {', '.join(missing)} (Kubernetes {K8S_VERSION}); a build takes "
        f"10-20 minutes cold, 2 with warm Go caches; log in {layout.log('build')}",
        flush=True,
    )
    write_build_module(layout)
    layout.bin.mkdir(parents=True, exist_ok=True)
    common = [
        "nice",
        "-n",
        "15",
        "go",
        "build",
        "-trimpath",
        "-tags",
        "selinux,notest",
        "-ldflags",
        _ldflags(),
    ]
    if "etcd" in missing:
        run(
            [*common, "-o", str(layout.bin / "etcd"), "go.etcd.io/etcd/server/v3"],
            cwd=layout.build,
            env=_go_env(),
            log=layout.log("build"),
        )
    packages = [GO_COMMANDS[name] for name in missing if name in GO_COMMANDS]
    if packages:
        run(
            [*common, "-o", str(layout.bin) + "/", *packages],
            cwd=layout.build,
            env=_go_env(),
            log=layout.log("build"),
        )


def build_pause(layout: Layout) -> Path:
    """The sandbox's PID 1, compiled from the pause.c that ships in the k8s.io/kubernetes module."""
    out = layout.bin / "pause"
    if not out.is_file():
        source = k8s_module_dir(layout) / "build" / "pause" / "linux" / "pause.c"
        run(["gcc", "-Os", "-static", "-o", str(out), f"-DVERSION={K8S_VERSION}", str(source)], quiet=True)
    return out


def check_versions(layout: Layout) -> None:
    out = subprocess.run(
        [str(layout.bin / "kubelet"), "--version"], capture_output=True, text=True, check=False
    )
    if K8S_VERSION not in out.stdout:
        raise Failure(
            f"{layout.bin / 'kubelet'} says {out.stdout.strip()!r}, not {K8S_VERSION}: remove {layout.bin}"
        )
