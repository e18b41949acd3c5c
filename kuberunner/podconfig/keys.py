"""Which keys `[runners.kubernetes]` may hold: GitLab Runner's (a file written for it loads here
unchanged) and kuberunner's own; any other is a typo, named in one line."""

from __future__ import annotations

KUBERUNNER_KUBERNETES_KEYS = (
    "log_transport",
    "output_limit",
    "api_unreachable_timeout",
    "wait_for_services_timeout",
)
"""kuberunner's own keys of `[runners.kubernetes]`."""

GITLAB_KUBERNETES_KEYS = frozenset(
    f"{prefix}{resource}_{which}{bound}"
    for prefix in ("", "helper_", "service_", "pod_")
    for resource in ("cpu", "memory", *(("ephemeral_storage",) if prefix != "pod_" else ()))
    for which in ("limit", "request")
    for bound in ("", "_overwrite_max_allowed")
) | frozenset(
    (
        "host",
        "context",
        "cert_file",
        "key_file",
        "ca_file",
        "bearer_token",
        "bearer_token_overwrite_allowed",
        "image",
        "namespace",
        "namespace_overwrite_allowed",
        "namespace_per_job",
        "privileged",
        "runtime_class_name",
        "allow_privilege_escalation",
        "allowed_images",
        "allowed_pull_policies",
        "allowed_services",
        "allowed_users",
        "allowed_groups",
        "pull_policy",
        "node_selector",
        "node_selector_overwrite_allowed",
        "node_tolerations",
        "node_tolerations_overwrite_allowed",
        "affinity",
        "image_pull_secrets",
        "use_service_account_image_pull_secrets",
        "helper_image",
        "helper_image_flavor",
        "helper_image_autoset_arch_and_os",
        "pod_termination_grace_period_seconds",
        "cleanup_grace_period_seconds",
        "cleanup_resources_timeout",
        "poll_interval",
        "poll_timeout",
        "resource_availability_check_max_attempts",
        "retry_limit",
        "retry_backoff_max",
        "retry_limits",
        "pod_labels",
        "pod_labels_overwrite_allowed",
        "scheduler_name",
        "service_account",
        "service_account_overwrite_allowed",
        "automount_service_account_token",
        "pod_annotations",
        "pod_annotations_overwrite_allowed",
        "pod_security_context",
        "init_permissions_container_security_context",
        "build_container_security_context",
        "helper_container_security_context",
        "service_container_security_context",
        "volumes",
        "host_aliases",
        "services",
        "cap_add",
        "cap_drop",
        "dns_policy",
        "dns_config",
        "container_lifecycle",
        "priority_class_name",
        "pod_spec",
        "logs_base_dir",
        "scripts_base_dir",
        "print_pod_warning_events",
        "terminationGracePeriodSeconds",
    )
)
"""Every key of GitLab Runner's `[runners.kubernetes]`: a file written for GitLab Runner loads here
unchanged (keys kuberunner does not act on are ignored); any other key is a typo, named in one line."""
