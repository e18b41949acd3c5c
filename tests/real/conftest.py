"""tests/real: what only a real Kubernetes can show (selected only on the real tier, tests/conftest.py).
Its session clusters are tests/cli's: the real cluster, and the same one through an account without
pods/exec."""

from cli.conftest import cluster, cluster_without_exec

__all__ = ["cluster", "cluster_without_exec"]
