"""config.toml lines for the runner's caches in the tests."""

from __future__ import annotations

from pathlib import Path

from real.cluster import TEST_HOST_ADDRESS


def local_cache(directory: Path) -> str:
    """A shared `local` cache in `directory`, served where the job's pods reach this machine."""
    return (
        '  [runners.cache]\n    Type = "local"\n    Shared = true\n'
        f'    [runners.cache.local]\n      Directory = "{directory}"\n'
        f'      ListenAddress = "{TEST_HOST_ADDRESS}"\n'
    )
