"""`host:port` text as given on a command line or in a kubeconfig, parsed once and checked.

Accepted: `PORT`, `:PORT`, `HOST:PORT`, `[IPv6]:PORT` and URLs (`https://HOST[:PORT]`, where a
missing port is the scheme's default). Anything else is the user's mistake: `BadInput`, one line.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from kuberunner.errors import BadInput

_DEFAULT_PORTS = {"https": 443, "http": 80}


def _port(text: str, whole: str, lowest: int) -> int:
    if not text.isdigit() or not lowest <= int(text) < 65536:
        raise BadInput(f"bad address {whole!r}: the port must be a number from {lowest} to 65535")
    return int(text)


def parse_address(text: str, *, default_host: str = "127.0.0.1", listen: bool = False) -> tuple[str, int]:
    """`(host, port)` of `text`; `default_host` stands in when only a port is given. With `listen`,
    port 0 (any free port) is allowed."""
    whole = text
    lowest = 0 if listen else 1
    text = text.strip()
    if not text:
        raise BadInput("bad address '': expected HOST:PORT")
    if "://" in text:
        try:
            url = urlsplit(text)
            port = url.port
        except ValueError as exc:
            raise BadInput(f"bad address {whole!r}: {exc}") from exc
        if url.scheme not in _DEFAULT_PORTS or not url.hostname:
            raise BadInput(f"bad address {whole!r}: expected http(s)://HOST[:PORT]")
        return url.hostname, port if port is not None else _DEFAULT_PORTS[url.scheme]
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not host or not rest.startswith(":"):
            raise BadInput(f"bad address {whole!r}: expected [IPv6]:PORT")
        return host, _port(rest[1:], whole, lowest)
    host, sep, port_text = text.rpartition(":")
    if not sep:
        return default_host, _port(text, whole, lowest)
    if ":" in host:
        raise BadInput(f"bad address {whole!r}: write an IPv6 host in brackets, [::1]:PORT")
    return host or default_host, _port(port_text, whole, lowest)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
