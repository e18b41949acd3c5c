"""What a CI job is (spec), and reading it from a .gitlab-ci.yml (gitlab_ci); pure, no I/O beyond the file."""
