"""The two test tiers, chosen by one switch: the embedded cluster (default) or a real Kubernetes.

`KUBERUNNER_TEST_KUBECONFIG=PATH` points every job-level test (tests/cli, tests/gitlab) at the cluster
in that kubeconfig instead of an embedded cluster started per session, and adds tests/real;
`KUBERUNNER_TEST_IMAGE` and `KUBERUNNER_TEST_HELPER_IMAGE` name the images its jobs run in (images the
cluster already has, under tags that are never pulled). `scripts/real-cluster exec -- …` sets all three.

A test that only makes sense on one tier says why: `@pytest.mark.embedded_only("reason")` deselects it
on the real tier; everything under tests/real/ is deselected on the embedded tier. Deselected, never
skipped: each tier reports exactly what it ran.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from real.cluster import REAL_KUBECONFIG

REAL_ONLY_DIR = Path(__file__).parent / "real"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "embedded_only(reason): the test needs the embedded cluster; the reason says why"
    )
    if REAL_KUBECONFIG is None:
        return
    image = os.environ.get("KUBERUNNER_TEST_IMAGE")
    if not image:
        raise pytest.UsageError("KUBERUNNER_TEST_KUBECONFIG is set but KUBERUNNER_TEST_IMAGE is not")
    # The runner's own fallbacks for jobs and configs that name no image (see kuberunner.local); every
    # `kuberunner` the tests start inherits them.
    os.environ["KUBERNETES_IMAGE"] = image
    helper = os.environ.get("KUBERUNNER_TEST_HELPER_IMAGE")
    if helper:
        os.environ["KUBERNETES_HELPER_IMAGE"] = helper


def _embedded_only_reason(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("embedded_only")
    if marker is None:
        return None
    reason = marker.args[0] if marker.args else marker.kwargs.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.embedded_only needs a reason")
    return reason


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, deselected = [], []
    for item in items:
        real_only = REAL_ONLY_DIR in item.path.parents
        embedded_only = _embedded_only_reason(item) is not None
        on_this_tier = not embedded_only if REAL_KUBECONFIG else not real_only
        (kept if on_this_tier else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
