"""The runner's own image, made the way the repository's Dockerfile says, from what this machine has.

There is no registry to pull `python:3.11-slim` from, so the image holds the same parts taken from
the machine: the Python 3.11 of the project's venv (interpreter, libpython and the standard library
without tests, IDLE, Tk or the build kit), a venv at /opt/kuberunner holding kuberunner and exactly
the distributions it depends on (pinned by deploy/requirements.txt, checked here), the shared
libraries all of that links (found with ldd), and a `kuberunner` user (uid 10001) that the image runs
as. No shell, no compiler. Its tag is a digest of the inputs, so a changed source is a new image and an
unchanged one is neither rebuilt nor imported again.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tomllib
from pathlib import Path

from .images import GROUP, Layer, _elf, _libraries, write_oci
from .proc import Failure

REPO = Path(__file__).resolve().parents[2]
RUNNER_UID = 10001
IMAGE_REPOSITORY = "localhost/kuberunner/runner"
PREFIX = "/usr/local"
VENV = "/opt/kuberunner"
STDLIB_SKIPPED = frozenset(
    {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data"}
)
"""Parts of the standard library a runner never imports (python:3.11-slim drops most of them too)."""
SKIPPED_MODULES = ("_tkinter.", "_test", "xxlimited", "_xxtestfuzz")
"""Extension modules of the same kind: Tk would bring X11's libraries along."""

CLOSURE = r"""
import importlib.metadata as md, json, re, sys
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
canon = lambda name: re.sub(r"[-_.]+", "-", name).lower()
found = {}
def walk(texts):
    for text in texts:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if canon(requirement.name) in found:
            continue
        try:
            dist = md.distribution(requirement.name)
        except md.PackageNotFoundError:
            sys.exit(f"{requirement.name} is not installed in the venv: pip install -e '.[test]'")
        files = [str(dist.locate_file(f)) for f in dist.files or []]
        found[canon(requirement.name)] = {"version": dist.version, "files": files}
        walk(dist.requires or [])
walk(json.loads(sys.argv[1]))
print(json.dumps({"base_prefix": sys.base_prefix, "version": sys.version, "dists": found}))
"""
"""Run by the venv's Python: the closure of pyproject.toml's dependencies (no extras) as installed
there, with each distribution's files. pyproject, not kuberunner's installed metadata: that one is
only as new as the last `pip install -e`."""


def _closure(venv_python: Path) -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as file:
        requirements = tomllib.load(file)["project"]["dependencies"]
    argv = [str(venv_python), "-c", CLOSURE, json.dumps(requirements)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Failure(f"{venv_python}: cannot list kuberunner's dependencies: {done.stderr.strip()[-300:]}")
    found: dict[str, object] = json.loads(done.stdout)
    return found


def read_lock(lock: Path) -> dict[str, str]:
    pins = {}
    for number, line in enumerate(lock.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise Failure(f"{lock}:{number}: not `name==version`")
        pins[name.strip().lower()] = version.strip()
    return pins


def write_lock(venv_python: Path) -> Path:
    """deploy/requirements.txt from the venv: after a dependency in pyproject.toml changed."""
    dists: dict[str, dict[str, object]] = _closure(venv_python)["dists"]  # type: ignore[assignment]
    lock = REPO / "deploy" / "requirements.txt"
    header = [line for line in lock.read_text().splitlines() if line.startswith("#")]
    pins = [f"{name}=={dist['version']}" for name, dist in sorted(dists.items())]
    lock.write_text("\n".join([*header, *pins]) + "\n")
    return lock


def _check_lock(dists: dict[str, dict[str, object]], lock: Path) -> None:
    """The image holds what the Dockerfile would install: the venv must match the lock exactly."""
    pins = read_lock(lock)
    installed = {name: str(d["version"]) for name, d in dists.items()}
    if installed != pins:
        differ = sorted(
            f"{name} {pins.get(name, 'unpinned')} in the lock, {installed.get(name, 'absent')} in the venv"
            for name in set(pins) | set(installed)
            if pins.get(name) != installed.get(name)
        )
        raise Failure(
            f"{lock} does not match the venv (`scripts/real-cluster runner-image --write-lock` "
            "rewrites it from the venv): " + "; ".join(differ)
        )


def _source_files(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / "kuberunner").rglob("*.py") if "__pycache__" not in p.parts)


def image_name(repo: Path, venv_python: Path) -> tuple[str, dict[str, object]]:
    """The tag names a digest of everything that goes in, so a new source is a new image."""
    closure = _closure(venv_python)
    digest = hashlib.sha256(json.dumps([closure["version"], closure["dists"]], sort_keys=True).encode())
    for path in _source_files(repo):
        digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(Path(__file__).read_bytes())
    return f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:16]}", closure


def _stdlib(layer: Layer, base: Path) -> list[Path]:
    """The standard library under /usr/local/lib/python3.11; returns its extension modules."""
    stdlib = base / "lib" / "python3.11"
    elves = []
    for dirpath, dirnames, filenames in os.walk(stdlib):
        here = Path(dirpath)
        relative = here.relative_to(stdlib)
        if here == stdlib:
            dirnames[:] = [d for d in dirnames if d not in STDLIB_SKIPPED and not d.startswith("config-")]
        dirnames[:] = sorted(d for d in dirnames if d != "test" and d != "tests")
        for name in sorted(filenames):
            full = here / name
            if name.endswith((".opt-1.pyc", ".opt-2.pyc")) or name.startswith(SKIPPED_MODULES):
                continue
            if not full.is_file():
                continue
            layer.copy(full, f"{PREFIX}/lib/python3.11/{relative}/{name}")
            if name.endswith(".so"):
                elves.append(full)
    return elves


def _venv(layer: Layer, repo: Path, dists: dict[str, dict[str, object]]) -> list[Path]:
    """/opt/kuberunner as `python -m venv` + `pip install` leave it; returns its ELF files."""
    site = f"{VENV}/lib/python3.11/site-packages"
    layer.file(f"{VENV}/pyvenv.cfg", f"home = {PREFIX}/bin\ninclude-system-site-packages = false\n".encode())
    layer.symlink(f"{VENV}/bin/python", f"{PREFIX}/bin/python3.11")
    layer.symlink(f"{VENV}/bin/python3", "python")
    script = f"#!{VENV}/bin/python\nimport sys\nfrom kuberunner.cli import main\nsys.exit(main())\n"
    layer.file(f"{VENV}/bin/kuberunner", script.encode(), 0o755)
    elves = []
    for _, dist in sorted(dists.items()):
        files: list[str] = dist["files"]  # type: ignore[assignment]
        for file in map(Path, files):
            parts = file.parts
            if "site-packages" not in parts or "__pycache__" in parts or not file.is_file():
                continue  # console scripts and caches: the runner needs neither
            inside = Path(*parts[parts.index("site-packages") + 1 :])
            layer.copy(file, f"{site}/{inside}")
            if _elf(file):
                elves.append(file)
    for path in _source_files(repo):  # as `pip install .` would put them
        layer.copy(path, f"{site}/{path.relative_to(repo)}")
    return elves


def build(repo: Path, images: Path, venv_python: Path) -> tuple[str, Path]:
    """The image's name and its OCI tar under `images`, built unless already there."""
    name, closure = image_name(repo, venv_python)
    out = images / (name.replace("/", "_").replace(":", "_") + ".tar")
    if out.exists():
        return name, out
    dists: dict[str, dict[str, object]] = closure["dists"]  # type: ignore[assignment]
    _check_lock(dists, repo / "deploy" / "requirements.txt")
    base = Path(str(closure["base_prefix"]))
    python = base / "bin" / "python3.11"
    layer = Layer()
    for path in ("etc", "proc", "sys", "dev", "var", "usr/local/bin"):
        layer.directory(path)
    layer.directory("tmp", 0o1777)
    layer.directory("home/kuberunner", 0o700, uid=RUNNER_UID)
    passwd = "root:x:0:0:root:/root:/sbin/nologin\n"
    passwd += f"kuberunner:x:{RUNNER_UID}:{RUNNER_UID}::/home/kuberunner:/sbin/nologin\n"
    layer.file("etc/passwd", passwd.encode())
    layer.file("etc/group", (GROUP + f"kuberunner:x:{RUNNER_UID}:\n").encode())
    layer.copy(python, f"{PREFIX}/bin/python3.11")
    layer.symlink(f"{PREFIX}/bin/python3", "python3.11")
    libpython = base / "lib" / "libpython3.11.so.1.0"
    layer.copy(libpython, f"{PREFIX}/lib/libpython3.11.so.1.0")
    elves = [python, *_stdlib(layer, base), *_venv(layer, repo, dists)]
    needed: set[Path] = set()
    for elf in elves:
        needed.update(lib for lib in _libraries(elf) if not str(lib).startswith(str(base)))
    for lib in sorted(needed):
        if not str(lib).startswith(str(Path(venv_python).parent.parent)):  # wheels' own .libs are in
            layer.copy(lib)
    config = {
        "Env": [
            f"PATH={VENV}/bin:{PREFIX}/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            # The interpreter's rpath is the machine's install prefix; in the image libpython is here.
            f"LD_LIBRARY_PATH={PREFIX}/lib",
            "HOME=/home/kuberunner",
            "PYTHONDONTWRITEBYTECODE=1",
            "PYTHONUNBUFFERED=1",
        ],
        "User": f"{RUNNER_UID}:{RUNNER_UID}",
        "WorkingDir": "/home/kuberunner",
        "Entrypoint": ["kuberunner"],
        "Cmd": ["run", "-c", "/etc/kuberunner/config.toml"],
    }
    write_oci(layer.finish(), name, config, out)
    for old in images.glob(IMAGE_REPOSITORY.replace("/", "_") + "_*.tar"):
        if old != out:  # each source edit makes one: keep the newest only
            old.unlink()
    return name, out
