"""The `[runners.kubernetes]` keys that shape the job's pod, with GitLab Runner's names and meaning.

Read from config.toml by `kuberunner.config` (`reader`) into one `PodOptions` (`options`); turned into
pod JSON by `executor.pod_options`; changed by job variables only within the `*_overwrite_*` bounds,
in `executor.overwrites`.
"""

from kuberunner.podconfig.options import (
    CONTAINER_KINDS,
    RESOURCE_SCOPES,
    RESOURCES,
    ContainerResources,
    ExtraVolume,
    PodOptions,
    PodSpecPatch,
    quantity_value,
)
from kuberunner.podconfig.reader import PodOptionsReader

__all__ = [
    "CONTAINER_KINDS",
    "RESOURCES",
    "RESOURCE_SCOPES",
    "ContainerResources",
    "ExtraVolume",
    "PodOptions",
    "PodOptionsReader",
    "PodSpecPatch",
    "quantity_value",
]
