"""`kuberunner run` and its companions (register, verify, unregister, list): a GitLab runner."""
