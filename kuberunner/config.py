"""Read GitLab Runner's config.toml, so a GitLab Runner user's file works here unchanged.

Only the keys kuberunner acts on are read into typed settings; every other key of GitLab Runner's
format is accepted and ignored, as the same file may serve a real GitLab Runner; in
`[runners.kubernetes]` a key GitLab Runner does not know either is a typo (`podconfig.keys`).
A value of the wrong type is a ConfigFileError naming the key (tomllib keeps no line numbers for
values); a TOML syntax error names the line. Connecting, polling and log reading are left to the
executor and `kube/`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from kuberunner.errors import ConfigFileError
from kuberunner.podconfig import PodOptions, PodOptionsReader

LogTransport = Literal["file", "kubelet"]


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    """`[runners.kubernetes]`: where the cluster is and how the build pod is made and watched."""

    host: str | None = None
    """The API server URL; None: in-cluster config, then kubeconfig (as GitLab Runner)."""
    context: str | None = None
    """The kubeconfig context to use when `host` is not given."""
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None
    bearer_token: str | None = None
    namespace: str = "default"
    """GitLab Runner's default when the key is empty."""
    image: str | None = None
    """The build image for jobs that name none."""
    helper_image: str | None = None
    poll_interval: int = 3
    """Seconds between pod status polls; GitLab Runner's default."""
    poll_timeout: int = 180
    """Seconds to wait for the pod to start; GitLab Runner's default."""
    log_transport: LogTransport = "file"
    """`file` reads the job log through pods/exec and resumes at the byte; `kubelet` reads pods/log,
    for clusters that forbid exec."""
    output_limit: int = 4096
    """KiB of job log kept, GitLab Runner's default. GitLab Runner reads it from `[[runners]]`; it is
    accepted there and here (this one wins), and kept here so the executor finds all pod settings together."""
    memory_limit: str | None = None
    cpu_limit: str | None = None
    retry_limit: int = 5
    """API retries for transient errors; GitLab Runner's default."""
    retry_backoff_max: int = 2000
    """Milliseconds; GitLab Runner's default."""
    api_unreachable_timeout: int = 60
    """Seconds the Kubernetes API may stay unreachable in one stretch before a running job becomes
    a system failure (kuberunner's own key): long enough to ride out an API server restart."""
    wait_for_services_timeout: int = 30
    """Seconds to wait for the services' ports to accept connections, GitLab Runner's default."""
    pod: PodOptions = field(default_factory=PodOptions)
    """The keys that shape the job's pod: resources, scheduling, security, volumes, patches (`podconfig`)."""


@dataclass(frozen=True, slots=True)
class CacheS3:
    """`[runners.cache.s3]`, gitlab-runner's spelling."""

    server_address: str = ""
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    bucket_name: str = ""
    bucket_location: str = "us-east-1"
    insecure: bool = False
    """True: plain http to ServerAddress."""


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """`[runners.cache]`: Type "s3" (presigned URLs the helper uses), "local" (a directory the runner
    serves with presigned URLs, for a cluster on this machine; the default with the embedded one)."""

    type: str = ""
    directory: str = ""
    """`[runners.cache.local] Directory` (kuberunner's own): where a `local` cache keeps its objects."""
    listen_address: str = "127.0.0.1"
    """`[runners.cache.local] ListenAddress` (kuberunner's own): the address of this machine the
    `local` cache's server listens on; its pods must reach it (loopback does for the embedded cluster)."""
    path: str = ""
    """A prefix of every object name."""
    shared: bool = False
    """False: each runner's objects live under `runner/<token prefix>/`."""
    s3: CacheS3 = field(default_factory=CacheS3)


@dataclass(frozen=True, slots=True)
class RunnerEntry:
    """One `[[runners]]` table."""

    name: str = ""
    url: str = ""
    token: str = ""
    executor: str = "kubernetes"
    environment: tuple[str, ...] = ()
    """`KEY=VALUE` strings added to every job's variables."""
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    feature_flags: dict[str, bool] = field(default_factory=dict)
    """`[runners.feature_flags]`, e.g. FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY."""
    tls_ca_file: str | None = None
    """`tls-ca-file` (GitLab Runner's name): the CA bundle that signs GitLab's certificate."""
    gitlab_call_timeout: float = 30.0
    """Seconds one call to GitLab (a trace PATCH, a PUT) may take before it is retried on a new
    connection (kuberunner's own key); the job long poll has its own 70 s."""
    cache: CacheSettings = field(default_factory=CacheSettings)
    final_update_timeout: float = 300.0
    """Seconds the runner keeps trying to hand GitLab a job's final trace and state (kuberunner's own
    key): a GitLab that never answers cannot hold a job slot for longer."""


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    concurrent: int = 1
    runners: tuple[RunnerEntry, ...] = ()
    listen_address: str | None = None
    """`[host]:port` where `run` serves /metrics and /health; None: no server (GitLab Runner's)."""
    log_level: str | None = None
    """One of LOG_LEVELS; None: `--log-level`, else warn (info with -v). The flag wins, as in
    GitLab Runner."""
    log_format: str | None = None
    """One of LOG_FORMATS; None: `--log-format`, else text. The flag wins, as in GitLab Runner."""


LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "fatal", "panic")
"""GitLab Runner's (logrus's) names; `warning` is its other spelling of `warn`."""
LOG_FORMATS = ("text", "json", "runner")
"""`runner` is GitLab Runner's default format; here it is `text`."""


_DEFAULTS = KubernetesSettings()
_T = TypeVar("_T")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)$")
_STRING_KEYS = (
    "host",
    "context",
    "cert_file",
    "key_file",
    "ca_file",
    "bearer_token",
    "image",
    "helper_image",
    "memory_limit",
    "cpu_limit",
)
_POSITIVE_INT_KEYS = (
    "poll_interval",
    "poll_timeout",
    "output_limit",
    "retry_backoff_max",
    "api_unreachable_timeout",
    "wait_for_services_timeout",
)


def load_runner_config(path: Path) -> RunnerConfig:
    """Read config.toml at `path`; every problem is a one-line ConfigFileError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigFileError(path, 0, "no such file") from exc
    except IsADirectoryError as exc:
        raise ConfigFileError(path, 0, "is a directory, not a file") from exc
    except OSError as exc:
        raise ConfigFileError(path, 0, f"cannot read: {exc.strerror or exc}") from exc
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigFileError(path, data.count(b"\n", 0, exc.start) + 1, "is not valid UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's TOMLDecodeError keeps the position only in its text.
        text = str(exc)
        found = _TOML_POSITION.search(text)
        line = int(found.group(1)) if found else 0
        raise ConfigFileError(path, line, f"invalid TOML: {_TOML_POSITION.sub('', text)}") from exc
    return _Reader(path).config(document)


class _Reader:
    def __init__(self, path: Path) -> None:
        self._path = path

    def fail(self, key: str, message: str) -> ConfigFileError:
        return ConfigFileError(self._path, 0, message, key=key)

    def typed(self, table: dict[str, Any], key: str, where: str, kind: type[_T], default: _T) -> _T:
        if key not in table:
            return default
        value = table[key]
        # bool is an int in Python, but `concurrent = true` is still a mistake.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(f"{where}{key}", f"expected {_KIND_NAMES.get(kind, kind.__name__)}")
        return value

    def seconds(self, table: dict[str, Any], key: str, where: str, default: float) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
            raise self.fail(f"{where}{key}", "expected a number of seconds above 0 (at most 86400)")
        return float(value)

    def table(self, parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
        return self.typed(parent, key, where, dict, cast(dict[str, Any], {}))

    def config(self, document: dict[str, Any]) -> RunnerConfig:
        concurrent = self.typed(document, "concurrent", "", int, 1)
        if concurrent < 1:
            raise self.fail("concurrent", "must be at least 1")
        runners = self.typed(document, "runners", "", list, [])
        entries = []
        for index, runner in enumerate(runners):
            if not isinstance(runner, dict):
                raise self.fail(f"runners[{index}]", "expected a table ([[runners]])")
            entries.append(self.runner(runner, f"runners[{index}]."))
        return RunnerConfig(concurrent=concurrent, runners=tuple(entries), **self.global_logging(document))

    def global_logging(self, document: dict[str, Any]) -> dict[str, str | None]:
        level = self.typed(document, "log_level", "", str, "") or None
        if level is not None and level.lower() not in LOG_LEVELS:
            names = "debug, info, warn, error, fatal, panic"
            raise self.fail("log_level", f"expected one of {names}, not {level!r}")
        log_format = self.typed(document, "log_format", "", str, "") or None
        if log_format is not None and log_format not in LOG_FORMATS:
            raise self.fail("log_format", f"expected 'text' or 'json', not {log_format!r}")
        listen = self.typed(document, "listen_address", "", str, "").strip() or None
        return {"listen_address": listen, "log_level": level, "log_format": log_format}

    def runner(self, table: dict[str, Any], where: str) -> RunnerEntry:
        environment = self.typed(table, "environment", where, list, [])
        for index, item in enumerate(environment):
            if not isinstance(item, str) or "=" not in item:
                raise self.fail(f"{where}environment[{index}]", "expected a string KEY=VALUE")
        flags = self.table(table, "feature_flags", where)
        for name, value in flags.items():
            if not isinstance(value, bool):
                raise self.fail(f"{where}feature_flags.{name}", "expected true or false")
        output_limit = self.typed(table, "output_limit", where, int, _DEFAULTS.output_limit)
        if output_limit < 1:
            raise self.fail(f"{where}output_limit", "must be a positive number of KiB")
        return RunnerEntry(
            tls_ca_file=self.typed(table, "tls-ca-file", where, str, "") or None,
            gitlab_call_timeout=self.seconds(table, "gitlab_call_timeout", where, 30.0),
            final_update_timeout=self.seconds(table, "final_update_timeout", where, 300.0),
            name=self.typed(table, "name", where, str, ""),
            url=self.typed(table, "url", where, str, ""),
            token=self.typed(table, "token", where, str, ""),
            executor=self.typed(table, "executor", where, str, "kubernetes"),
            environment=tuple(environment),
            kubernetes=self.kubernetes(
                self.table(table, "kubernetes", where), f"{where}kubernetes.", output_limit
            ),
            feature_flags=dict(flags),
            cache=self.cache(self.table(table, "cache", where), f"{where}cache."),
        )

    def cache(self, table: dict[str, Any], where: str) -> CacheSettings:
        kind = self.typed(table, "Type", where, str, "")
        if kind not in ("", "s3", "local"):
            raise self.fail(f"{where}Type", f"expected 's3' or 'local', not {kind!r}")
        local = self.table(table, "local", where)
        s3 = self.table(table, "s3", where)
        s3_where = f"{where}s3."
        settings = CacheSettings(
            type=kind,
            path=self.typed(table, "Path", where, str, "").strip("/"),
            shared=self.typed(table, "Shared", where, bool, False),
            directory=self.typed(local, "Directory", f"{where}local.", str, ""),
            listen_address=self.typed(local, "ListenAddress", f"{where}local.", str, "") or "127.0.0.1",
            s3=CacheS3(
                server_address=self.typed(s3, "ServerAddress", s3_where, str, ""),
                access_key=self.typed(s3, "AccessKey", s3_where, str, ""),
                secret_key=self.typed(s3, "SecretKey", s3_where, str, ""),
                bucket_name=self.typed(s3, "BucketName", s3_where, str, ""),
                bucket_location=self.typed(s3, "BucketLocation", s3_where, str, "") or "us-east-1",
                insecure=self.typed(s3, "Insecure", s3_where, bool, False),
            ),
        )
        if kind == "s3" and not (settings.s3.server_address and settings.s3.bucket_name):
            raise self.fail(
                f"{s3_where}ServerAddress", "ServerAddress and BucketName are required for an s3 cache"
            )
        return settings

    def kubernetes(self, table: dict[str, Any], where: str, output_limit: int) -> KubernetesSettings:
        values: dict[str, Any] = {}
        for key in _STRING_KEYS:
            text = self.typed(table, key, where, str, "")
            # GitLab Runner treats an empty string as "not set".
            values[key] = text or None
        values["namespace"] = self.typed(table, "namespace", where, str, "") or "default"
        values["output_limit"] = output_limit
        for key in _POSITIVE_INT_KEYS:
            number = self.typed(table, key, where, int, values.get(key, getattr(_DEFAULTS, key)))
            if number < 1:
                raise self.fail(f"{where}{key}", "must be a positive integer")
            values[key] = number
        retry_limit = self.typed(table, "retry_limit", where, int, _DEFAULTS.retry_limit)
        if retry_limit < 0:
            raise self.fail(f"{where}retry_limit", "must not be negative")
        values["retry_limit"] = retry_limit
        transport = self.typed(table, "log_transport", where, str, "file")
        if transport not in ("file", "kubelet"):
            raise self.fail(f"{where}log_transport", f"expected 'file' or 'kubelet', not {transport!r}")
        values["log_transport"] = transport
        if bool(values["cert_file"]) != bool(values["key_file"]):
            raise self.fail(f"{where}cert_file", "cert_file and key_file must be given together")
        values["pod"] = PodOptionsReader(self.fail, where, self._path.parent).read(
            table, also_known=(*values, "namespace")
        )
        return KubernetesSettings(**values)


_KIND_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}
