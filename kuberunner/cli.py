"""The `kuberunner` command: parses arguments, makes one call, maps bad input to exit status 2.

Exit statuses of `exec`: 0 success, 1 script failure, 2 bad input, 3 system failure, 4 timeout,
130 canceled.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal

import click

from kuberunner import __version__
from kuberunner.config import LOG_FORMATS, LOG_LEVELS
from kuberunner.errors import BadInput
from kuberunner.job.durations import MAX_JOB_TIMEOUT
from kuberunner.job.variables import MASKED_VARS_ENV, variable_problem

BAD_INPUT = 2
NO_CLUSTER = 78
"""`run` found no cluster to use (sysexits' EX_CONFIG): a service manager should not simply restart it."""


def _key_value(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", ctx=ctx, param=param)
        problem = variable_problem(key, value)
        if problem is not None:
            raise click.BadParameter(problem, ctx=ctx, param=param)
        pairs.append((key, value))
    return tuple(pairs)


def _inputs(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", ctx=ctx, param=param)
        pairs.append((name, value))
    return tuple(pairs)


@click.group()
@click.version_option(__version__, prog_name="kuberunner")
@click.option("-v", "--verbose", is_flag=True, help="Log the runner's own diagnostics to stderr.")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="GitLab Runner's levels; wins over config.toml's log_level (default: warn, info with -v).",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    help="text (the default) or json, one event a line; wins over config.toml's log_format.",
)
@click.pass_context
def main(ctx: click.Context, verbose: bool, log_level: str | None, log_format: str | None) -> None:
    """Run GitLab CI jobs in Kubernetes pods, through attach."""
    from kuberunner.runner import logs

    logs.configure(level=log_level or ("info" if verbose else "warn"), fmt=log_format or "text")
    # `run` applies config.toml's log_level/log_format only where these flags left them open.
    ctx.obj = {"log_level": log_level, "log_format": log_format}


@main.command("exec")
@click.argument("jobs", nargs=-1)
@click.option(
    "-f",
    "--file",
    "file",
    type=click.Path(path_type=Path),
    default=Path(".gitlab-ci.yml"),
    show_default=True,
    help="The pipeline file.",
)
@click.option("-c", "--config", type=click.Path(path_type=Path), help="A GitLab Runner config.toml.")
@click.option("--kubeconfig", type=click.Path(path_type=Path), help="Use this kubeconfig.")
@click.option("--context", help="The kubeconfig context to use.")
@click.option("-n", "--namespace", help="Namespace for the job pods.")
@click.option(
    "--var",
    "variables",
    multiple=True,
    callback=_key_value,
    metavar="KEY=VALUE",
    help="An extra job variable (repeatable).",
)
@click.option(
    "--masked-var",
    "masked",
    multiple=True,
    callback=_key_value,
    metavar="KEY=VALUE",
    help="An extra job variable whose value is masked in the trace (repeatable). The value shows in `ps`: "
    f"prefer --masked-var-file or ${MASKED_VARS_ENV}.",
)
@click.option(
    "--masked-var-file",
    "masked_files",
    multiple=True,
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="Masked job variables from a file of KEY=VALUE lines (repeatable).",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    callback=_inputs,
    metavar="NAME=VALUE",
    help="A value for the pipeline file's own `spec:inputs` (repeatable).",
)
@click.option("--trace-file", type=click.Path(path_type=Path), help="Also write the trace here.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True, max=MAX_JOB_TIMEOUT),
    help="Job timeout in seconds (at most 1 month, as in GitLab).",
)
@click.option(
    "--color/--no-color", default=None, help="ANSI colours in runner lines (default: if a terminal)."
)
@click.option(
    "--log-transport",
    type=click.Choice(["file", "kubelet"]),
    help="How to read job output: file (pods/exec, the default) or kubelet (pods/log, no exec at all).",
)
@click.option(
    "--list", "list_only", is_flag=True, help="Print the pipeline (stage, job, when, needs); run nothing."
)
@click.option("--manual", is_flag=True, help="Run manual jobs too (a manual job named as JOB runs anyway).")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=1000),
    help="How many jobs run at once (default: 4 per CPU).",
)
def exec_command(
    jobs: tuple[str, ...],
    file: Path,
    config: Path | None,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    variables: tuple[tuple[str, str], ...],
    masked: tuple[tuple[str, str], ...],
    masked_files: tuple[Path, ...],
    inputs: tuple[tuple[str, str], ...],
    trace_file: Path | None,
    timeout: float | None,
    color: bool | None,
    log_transport: Literal["file", "kubelet"] | None,
    list_only: bool,
    manual: bool,
    concurrency: int | None,
) -> None:
    """Run the pipeline of a .gitlab-ci.yml as GitLab would (only JOBS if named), each job in its own pod."""
    # From here on Ctrl-C and SIGTERM cancel (exit 130), never click's "Aborted!": the ones that come
    # while the rest loads are kept for run_exec, which takes the handlers over.
    early: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda received, _frame: early.append(received))
    from kuberunner.local import ExecOptions, run_exec

    options = ExecOptions(
        file=file,
        jobs=jobs,
        config=config,
        kubeconfig=kubeconfig,
        context=context,
        namespace=namespace,
        variables=variables,
        masked=masked,
        masked_files=masked_files,
        inputs=inputs,
        environ=dict(os.environ),
        trace_file=trace_file,
        timeout=timeout,
        color=sys.stdout.isatty() if color is None else color,
        log_transport=log_transport,
        list_only=list_only,
        manual=manual,
        concurrency=concurrency,
    )
    sys.exit(_run(lambda: run_exec(options, signals_so_far=early)))


@main.command("cluster")
@click.option(
    "--listen", default="127.0.0.1:0", show_default=True, help="Loopback address and port (0: any)."
)
@click.option("--kubeconfig-out", type=click.Path(path_type=Path), help="Where to write the kubeconfig.")
@click.option("--state-dir", type=click.Path(path_type=Path), help="Where pods keep their files.")
@click.option(
    "--forbid", multiple=True, metavar="RESOURCE", help="Refuse e.g. pods/exec with 403, as RBAC would."
)
def cluster_command(
    listen: str, kubeconfig_out: Path | None, state_dir: Path | None, forbid: tuple[str, ...]
) -> None:
    """Run the embedded single-node cluster in the foreground until SIGINT or SIGTERM."""
    from kuberunner.cluster.server import run_cluster_forever

    sys.exit(
        run_cluster_forever(listen=listen, kubeconfig_out=kubeconfig_out, state_dir=state_dir, forbid=forbid)
    )


_CONFIG = click.option(
    "-c",
    "--config",
    type=click.Path(path_type=Path),
    default=Path("config.toml"),
    show_default=True,
    help="GitLab Runner's config.toml.",
)


@main.command("register")
@_CONFIG
@click.option(
    "--url", "-u", envvar="CI_SERVER_URL", required=True, help="The GitLab instance URL [CI_SERVER_URL]."
)
@click.option(
    "--token",
    "-t",
    envvar="CI_SERVER_TOKEN",
    help="A glrt- runner token, or a legacy registration token [CI_SERVER_TOKEN]; visible in `ps`: "
    "prefer --token-file or the environment.",
)
@click.option("--registration-token", "-r", envvar="REGISTRATION_TOKEN", hidden=True)
@click.option("--token-file", type=click.Path(path_type=Path), help="Read the token from this file.")
@click.option("--tls-ca-file", default="", help="The CA bundle that signs GitLab's certificate.")
@click.option("--name", default="", help="The runner's name in config.toml.")
@click.option("--kubernetes-host", default="", help='[runners.kubernetes] host ("embedded": this machine).')
@click.option("--kubernetes-namespace", default="", help="[runners.kubernetes] namespace.")
@click.option("--kubernetes-image", default="", help="[runners.kubernetes] image.")
def register_command(
    config: Path,
    url: str,
    token: str | None,
    registration_token: str | None,
    token_file: Path | None,
    tls_ca_file: str,
    name: str,
    kubernetes_host: str,
    kubernetes_namespace: str,
    kubernetes_image: str,
) -> None:
    """Register (or verify) a runner with GitLab and add it to config.toml."""
    from kuberunner.runner.registration import RegisterOptions, register

    secret = _register_token(token, registration_token, token_file)
    given = (("host", kubernetes_host), ("namespace", kubernetes_namespace), ("image", kubernetes_image))
    kubernetes = {key: value for key, value in given if value}
    options = RegisterOptions(
        config=config,
        url=url,
        token=secret,
        name=name,
        kubernetes=kubernetes,
        tls_ca_file=tls_ca_file or None,
    )
    sys.exit(_run(lambda: register(options, click.echo)))


def _register_token(token: str | None, registration_token: str | None, token_file: Path | None) -> str:
    """The one token given: --token-file, else --token / $CI_SERVER_TOKEN, else $REGISTRATION_TOKEN."""
    if token_file is not None:
        if token:
            raise click.UsageError("give --token-file or --token (or $CI_SERVER_TOKEN), not both")
        try:
            text = token_file.read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise click.UsageError(f"--token-file {token_file}: {reason}") from None
        if not text or "\n" in text:
            raise click.UsageError(f"--token-file {token_file}: expected one token on one line")
        return text
    found = token or registration_token
    if not found:
        raise click.UsageError(
            "no token: give --token-file PATH, $CI_SERVER_TOKEN or $REGISTRATION_TOKEN (or --token)"
        )
    return found


@main.command("verify")
@_CONFIG
@click.option("--delete", is_flag=True, help="Remove runners GitLab no longer knows from config.toml.")
def verify_command(config: Path, delete: bool) -> None:
    """Check every configured runner's token with GitLab."""
    from kuberunner.runner.registration import verify

    sys.exit(_run(lambda: verify(config, click.echo, delete=delete)))


@main.command("unregister")
@_CONFIG
@click.option("--name", default=None, help="The runner to unregister.")
@click.option("--all-runners", is_flag=True, help="Unregister every configured runner.")
def unregister_command(config: Path, name: str | None, all_runners: bool) -> None:
    """Unregister runners from GitLab and remove them from config.toml."""
    from kuberunner.runner.registration import unregister

    sys.exit(_run(lambda: unregister(config, click.echo, name=name, all_runners=all_runners)))


@main.command("list")
@_CONFIG
def list_command(config: Path) -> None:
    """List the runners in config.toml."""
    from kuberunner.runner.registration import list_runners

    async def listing() -> int:
        return list_runners(config, click.echo)

    sys.exit(_run(listing))


@main.command("run")
@_CONFIG
@click.option("--kubeconfig", type=click.Path(path_type=Path), help="Use this kubeconfig for every runner.")
@click.option("--context", help="The kubeconfig context to use.")
@click.option(
    "--jobs-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where running jobs keep the records a restarted runner takes them over from "
    "(default: kuberunner-jobs next to config.toml).",
)
@click.pass_obj
def run_command(
    flags: dict[str, str | None] | None,
    config: Path,
    kubeconfig: Path | None,
    context: str | None,
    jobs_dir: Path | None,
) -> None:
    """Take jobs from GitLab for every [[runners]] entry and run them, until SIGTERM/SIGQUIT."""
    from kuberunner.local import NoClusterConfigured
    from kuberunner.runner.loop import RunOptions, run_runners

    try:
        options = RunOptions(
            config=config,
            kubeconfig=kubeconfig,
            context=context,
            jobs_dir=jobs_dir,
            log_level_flag=(flags or {}).get("log_level"),
            log_format_flag=(flags or {}).get("log_format"),
        )
        status = _run(lambda: run_runners(options))
    except NoClusterConfigured as exc:
        click.echo(f"kuberunner: error: {exc}", err=True)
        status = NO_CLUSTER
    sys.exit(status)


@main.command("proxy")
@click.option("--target", required=True, metavar="HOST:PORT", help="The API server to relay to.")
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="Where the proxy listens.")
@click.option("--reset-every", type=float, metavar="SECONDS", help="Reset every connection this often.")
@click.option("--black-hole-every", type=float, metavar="SECONDS", help="Start a black hole this often.")
@click.option("--black-hole-for", type=float, default=3.0, show_default=True, metavar="SECONDS")
@click.option(
    "--silence-after",
    type=float,
    metavar="SECONDS",
    help="Each connection goes silent this long after it opens.",
)
@click.option(
    "--silence-every", type=float, metavar="SECONDS", help="All open connections go silent this often."
)
@click.option("--kubeconfig", type=click.Path(path_type=Path), help="A kubeconfig to point at the proxy…")
@click.option("--kubeconfig-out", type=click.Path(path_type=Path), help="…written here.")
def proxy_command(
    target: str,
    listen: str,
    reset_every: float | None,
    black_hole_every: float | None,
    black_hole_for: float,
    silence_after: float | None,
    silence_every: float | None,
    kubeconfig: Path | None,
    kubeconfig_out: Path | None,
) -> None:
    """A TCP fault proxy between a runner and an API server, like the seed's tcpkill.

    SIGUSR1 resets every open connection, SIGUSR2 starts a black hole, SIGHUP makes every open
    connection silent for good (bytes dropped both ways, nothing closed); Ctrl-C stops. It listens
    on loopback only.
    """
    from kuberunner.faultproxy import FaultProxy, rewrite_kubeconfig
    from kuberunner.faultproxy.run import run_proxy

    if (kubeconfig is None) != (kubeconfig_out is None):
        raise click.UsageError("--kubeconfig and --kubeconfig-out go together")

    def ready(proxy: FaultProxy) -> None:
        if kubeconfig is not None and kubeconfig_out is not None:
            rewrite_kubeconfig(kubeconfig, kubeconfig_out, server=proxy.address)
            click.echo(f"kubeconfig: {kubeconfig_out}")
        click.echo(f"kuberunner proxy: {proxy.address} -> {target}", err=False)

    async def main_() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        stats = await run_proxy(
            target,
            listen,
            reset_every,
            black_hole_every=black_hole_every,
            black_hole_for=black_hole_for,
            silence_after=silence_after,
            silence_every=silence_every,
            handle_signals=True,
            on_ready=ready,
            stop=stop,
        )
        click.echo(f"kuberunner proxy: stopped; {stats}")
        return 0

    sys.exit(_run(main_))


def _run(make: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run the coroutine made by `make`; bad input becomes one line on stderr and status 2."""
    try:
        return asyncio.run(make())
    except BadInput as exc:
        click.echo(f"kuberunner: error: {exc}", err=True)
        return BAD_INPUT
