from kuberunner.executor.backoff import Backoff


def test_delays_grow_from_first_to_cap_and_start_over_after_health() -> None:
    backoff = Backoff(first=0.2, cap=2.0, budget=100)
    assert [backoff.failed(0) for _ in range(6)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    backoff.healthy()
    assert backoff.failed(10) == 0.2


def test_budget_counts_one_stretch_of_failures() -> None:
    backoff = Backoff(budget=5)
    assert backoff.failed(0) is not None
    assert backoff.failed(4.9) is not None
    assert backoff.failed(5.0) is None
    backoff.healthy()
    assert backoff.failed(7.0) is not None
