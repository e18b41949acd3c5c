from kuberunner.executor.services import ServiceContainer, aliases_for, host_aliases


def test_host_aliases_leave_out_names_the_api_server_refuses() -> None:
    # GitLab derives `registry.example.com__team__db` and `registry.example.com-team-db` from the
    # image; a real API server refuses a pod naming the first in hostAliases (422, not RFC 1123).
    derived = aliases_for("registry.example.com/team/db:15", "")
    assert derived == ("registry.example.com__team__db", "registry.example.com-team-db")
    services = [
        ServiceContainer("registry.example.com/team/db:15", derived),
        ServiceContainer("x", ("db", "cache")),
    ]
    assert host_aliases(services) == [
        {"ip": "127.0.0.1", "hostnames": ["registry.example.com-team-db", "db", "cache"]}
    ]
