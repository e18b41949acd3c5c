"""kuberunner: runs GitLab CI jobs in Kubernetes pods through attach, so jobs outlive dropped connections."""

__version__ = "0.1.0"
