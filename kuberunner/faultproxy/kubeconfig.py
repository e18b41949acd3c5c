"""A copy of a kubeconfig whose current cluster points at the fault proxy.

The proxy relays TLS untouched, so the API server's certificate reaches the client unchanged. If the
proxy listens on the address the certificate names (the embedded cluster's SAN is IP 127.0.0.1,
and so is the proxy's default listen address), changing the port is all it takes. If the host
changes too, the copy names the original host in `tls-server-name`, so verification still checks
the certificate against the name it was issued for. Everything else (comments, other contexts,
credentials) is kept; relative file paths are made absolute, since the copy may live elsewhere.
Reading the kubeconfig for real is `kuberunner.kube.config`'s job, not this module's.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from kuberunner.errors import FileError
from kuberunner.faultproxy.address import format_address, parse_address

_PATH_KEYS = {
    "clusters": ("cluster", ("certificate-authority",)),
    "users": ("user", ("client-certificate", "client-key", "tokenFile")),
}


def _line(node: Any) -> int:
    lc = getattr(node, "lc", None)
    return int(lc.line) + 1 if lc is not None and lc.line is not None else 0


def _load(src: Path) -> tuple[Any, bool]:
    """The document, and whether it is JSON (a kubeconfig may be: JSON is YAML)."""
    try:
        text = src.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError(src, 0, f"cannot read the kubeconfig: {exc}") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ruamel warns about valid YAML, e.g. reused anchors
            return YAML(typ="rt").load(text), text.lstrip().startswith("{")
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise FileError(src, mark.line + 1 if mark else 0, f"invalid YAML: {exc.problem}") from exc
    except (YAMLError, RecursionError) as exc:
        raise FileError(src, 0, f"invalid YAML: {exc}") from exc


def _named(doc: Any, section: str, name: str, src: Path) -> Any:
    """The `cluster`/`context` body of the entry of `section` called `name`."""
    entries = doc.get(section)
    if not isinstance(entries, list):
        raise FileError(src, _line(doc), f"no '{section}' list")
    body_key = section[:-1]
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(body_key)
            if not isinstance(body, dict):
                raise FileError(src, _line(entry), f"{section} entry {name!r} has no '{body_key}' mapping")
            return body
    raise FileError(src, _line(entries), f"no {body_key} named {name!r} in '{section}'")


def _new_server(
    old: str, server: str, new_host: str, new_port: int, src: Path, line: int
) -> tuple[str, str | None]:
    """The new `server` URL, and the host TLS must still verify against if the host changes."""
    try:
        old_url = urlsplit(old)
        old_host = old_url.hostname
    except ValueError as exc:
        raise FileError(src, line, f"cluster server {old!r} is not a URL: {exc}") from exc
    if not old_url.scheme or not old_host:
        raise FileError(src, line, f"cluster server {old!r} is not a URL")
    if "://" in server:
        new = server
    else:
        new = urlunsplit(old_url._replace(netloc=format_address(new_host, new_port)))
    return new, (old_host if new_host != old_host else None)


def _absolute_paths(doc: Any, base: Path) -> None:
    for section, (body_key, keys) in _PATH_KEYS.items():
        entries = doc.get(section)
        for entry in entries if isinstance(entries, list) else ():
            body = entry.get(body_key) if isinstance(entry, dict) else None
            if not isinstance(body, dict):
                continue
            for key in keys:
                value = body.get(key)
                if isinstance(value, str) and value and not Path(value).is_absolute():
                    body[key] = str((base / value).resolve())


def rewrite_kubeconfig(src: Path, dst: Path, *, server: str) -> None:
    """Copy `src` to `dst` with the current context's cluster `server` replaced.

    `server` is a URL (`https://127.0.0.1:PORT`) or just `HOST:PORT` (e.g. `FaultProxy.address`),
    which keeps the old scheme and path. `dst` is written atomically with mode 0600 (it may hold
    credentials). A bad `src` raises `FileError`, a bad `server` `BadInput`.
    """
    new_host, new_port = parse_address(server)
    doc, is_json = _load(src)
    if not isinstance(doc, dict):
        raise FileError(src, 0, "a kubeconfig must be a mapping")
    current = doc.get("current-context")
    if not isinstance(current, str) or not current:
        raise FileError(src, _line(doc), "no current-context: no cluster to point at the proxy")
    context = _named(doc, "contexts", current, src)
    cluster_name = context.get("cluster")
    if not isinstance(cluster_name, str) or not cluster_name:
        raise FileError(src, _line(context), f"context {current!r} names no cluster")
    cluster = _named(doc, "clusters", cluster_name, src)
    old = cluster.get("server")
    if not isinstance(old, str) or not old:
        raise FileError(src, _line(cluster), f"cluster {cluster_name!r} has no server")
    new, verify_as = _new_server(old, server, new_host, new_port, src, _line(cluster))
    cluster["server"] = new
    if verify_as is not None and "tls-server-name" not in cluster:
        cluster["tls-server-name"] = verify_as
    if src.resolve().parent != dst.resolve().parent:
        _absolute_paths(doc, src.resolve().parent)

    out = io.StringIO()
    if is_json:
        # Dumped as YAML, a JSON document keeps its flow style and comes out wrapped at column 0,
        # which YAML parsers reject: JSON in, JSON out.
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        YAML(typ="rt").dump(doc, out)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(out.getvalue())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
