"""GitLab's runner API, as the runner speaks it: the HTTP client, the job payload, the trace upload."""
