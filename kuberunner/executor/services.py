"""Services: extra containers in the job's pod, reachable by alias, up before the script starts.

Every container of a pod shares its network, so an alias is a `hostAliases` entry for 127.0.0.1
and a service's port is a loopback port. The helper's `wait_for_services` stage polls each exposed
port (curl's telnet:// connects without sending anything) until it accepts connections or the
timeout passes; a service that never came up gets a warning and the tail of its log, read through
pods/log (allowed with either transport), as GitLab Runner prints it. The job goes on either way.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from kuberunner.executor.strategy import JobContext
from kuberunner.kube.client import read_bounded

log = logging.getLogger(__name__)

WAIT_STAGE = "wait_for_services"
LOG_TAIL_LINES = 16
LOG_TAIL_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class ServiceContainer:
    image: str
    aliases: tuple[str, ...]
    command: tuple[str, ...] = ()
    """The image's entrypoint replaced (GitLab's `entrypoint`)."""
    args: tuple[str, ...] = ()
    """GitLab's `command`."""
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[int, ...] = ()
    pull_policy: tuple[str, ...] = ()
    """The service's own `pull_policy` (Kubernetes names), judged by `overwrites`; (): the build's."""


def container_name(index: int) -> str:
    return f"svc-{index}"


def aliases_for(image: str, alias: str) -> tuple[str, ...]:
    """GitLab's aliases: the ones given, else the image name without tag, `/` as `__` and as `-`."""
    given = tuple(a for a in re.split(r"[\s,]+", alias) if a)
    if given:
        return given
    name = image.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return tuple(dict.fromkeys((name.replace("/", "__"), name.replace("/", "-"))))


def pod_containers(services: Sequence[ServiceContainer], security: dict[str, Any]) -> list[dict[str, Any]]:
    containers = []
    for index, service in enumerate(services):
        container: dict[str, Any] = {
            "name": container_name(index),
            "image": service.image,
            "securityContext": security,
            "env": [{"name": k, "value": v} for k, v in service.env],
        }
        if service.command:
            container["command"] = list(service.command)
        if service.args:
            container["args"] = list(service.args)
        if service.ports:
            container["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in service.ports]
        if service.pull_policy:
            container["imagePullPolicy"] = service.pull_policy[0]
        containers.append(container)
    return containers


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def host_aliases(services: Sequence[ServiceContainer]) -> list[dict[str, Any]]:
    """The pod's hostAliases: the API server refuses a pod whose host names are not RFC 1123
    subdomains, so a derived alias such as `group__image` is left out (`group-image` stays)."""
    names = [
        name
        for name in dict.fromkeys(a for s in services for a in s.aliases)
        if len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name)
    ]
    return [{"ip": "127.0.0.1", "hostnames": names}] if names else []


def render_wait(services: Sequence[ServiceContainer], *, timeout: int) -> str:
    """Poll every port; exit with the 1-based index of the first service that never came up."""
    lines = [
        "# Rendered by kuberunner: wait until every service's ports accept connections.\n",
        "kr_up() {\n",
        "  kr_t=\"$(curl -s -o /dev/null -w '%{time_connect}' --max-time 0.5 "
        '"telnet://127.0.0.1:$1" </dev/null 2>/dev/null)"\n',
        '  [ -n "$kr_t" ] && [ "$kr_t" != 0.000000 ]\n',
        "}\n",
        f"kr_end=$(( $(date +%s) + {int(timeout)} ))\n",
    ]
    for index, service in enumerate(services, 1):
        for port in service.ports:
            lines += [
                f"until kr_up {port}; do\n",
                f'  [ "$(date +%s)" -ge "$kr_end" ] && exit {index}\n',
                "  sleep 0.2 2>/dev/null || sleep 1\n",
                "done\n",
            ]
    lines.append("exit 0\n")
    return "".join(lines)


async def report_failed(job: JobContext, services: Sequence[ServiceContainer], index: int) -> None:
    """GitLab Runner's warning for a service that did not come up, with the tail of its log."""
    service = services[index]
    name = container_name(index)
    ports = ", ".join(f"{p}/tcp" for p in service.ports)
    trace = job.trace
    trace.runner_line(f"*** WARNING: Service {name} probably didn't start properly.", level="warning")
    trace.runner_line("Health check error:", level="warning")
    trace.runner_line(f"service {service.image} did not accept connections on {ports}", level="warning")
    trace.runner_line("Service container logs:", level="warning")
    tail = await _log_tail(job, name)
    for line in tail.decode(errors="replace").splitlines():
        trace.runner_line(line)
    trace.runner_line("*********", level="warning")


async def _log_tail(job: JobContext, container: str) -> bytes:
    client = job.client
    path = f"/api/v1/namespaces/{job.state.namespace}/pods/{job.state.pod}/log"
    try:
        headers = await client.auth_headers()
        async with asyncio.timeout(10):
            async with client.session.get(
                client.url(path),
                params={"container": container, "tailLines": str(LOG_TAIL_LINES)},
                headers=headers,
            ) as resp:
                body = await read_bounded(resp.content, LOG_TAIL_BYTES)
                return body if resp.status == 200 else b""
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.info("cannot read the log of %s: %s", container, exc)
        return b""
