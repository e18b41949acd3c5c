"""Settings of the Kubernetes executor, grouped, each with the reason for its default."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kuberunner.executor.observer import NO_OBSERVER, ExecutorObserver
from kuberunner.podconfig import PodOptions
from kuberunner.shell.layout import PodPaths


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    namespace: str = "default"
    """GitLab Runner's default when `namespace` is empty."""
    image: str = "alpine:latest"
    """Used when neither the job nor the config names one; the embedded cluster runs on the host anyway."""
    runner_name: str = "kuberunner"
    """Goes into the pod's labels so a sweeper or a restarted runner finds its pods."""
    pod_start_timeout: float = 180.0
    """GitLab's `poll_timeout`: how long a pod may stay Pending before the job is a system failure."""
    pod_poll_interval: float = 3.0
    """GitLab's `poll_interval`: while the pod starts, seconds between the GETs that check the watch
    of it has not gone silent (`podhealth.starting`)."""
    after_script_timeout: float = 300.0
    """GitLab's default after_script timeout (5 minutes), counted apart from the job's timeout."""
    default_timeout: float = 3600.0
    """GitLab's default job timeout (1 hour)."""
    api_budget: float = 60.0
    """How long the Kubernetes API may stay unreachable in one stretch before the job fails."""
    kill_grace: float = 15.0
    """How long to wait for a killed stage's marker before calling the stage lost."""
    log_transport: Literal["file", "kubelet"] = "file"
    """`file` reads the log file through pods/exec: exact and live. `kubelet` reads pods/log, for
    clusters that forbid exec; partial lines then show when their newline arrives."""
    helper_image: str | None = None
    """The image of the `helper` container that fetches a GitLab job's sources (it needs git and a
    POSIX shell), config.toml's `helper_image`. None: the build image, which the embedded cluster
    runs on the host anyway."""
    memory_limit: str | None = None
    """The build container's memory limit (a Kubernetes quantity), GitLab's `memory_limit`."""
    paths: PodPaths = field(default_factory=PodPaths)
    owner: str | None = None
    """Labels every pod (`podspec.OWNER_LABEL`) so a restarted `run` or `exec` finds its orphans."""
    observer: ExecutorObserver = NO_OBSERVER
    """Hears of reconnects and stage starts (`run`'s metrics); not a setting, but shared like one."""
    pod: PodOptions = field(default_factory=PodOptions)
    """config.toml's pod keys (`podconfig`), before a job's variables overwrite any (`overwrites`)."""
