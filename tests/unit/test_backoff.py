"""The one back-off rule: doubling to a ceiling, starting over on reset or after a stable run."""

from __future__ import annotations

from calico.backoff import Backoff
from calico.node.supervisor import restart_backoff


def test_doubles_to_a_ceiling_and_resets_after_a_stable_run() -> None:
    b = Backoff(initial=0.5, maximum=4.0, factor=2.0, stable_after=60.0)
    assert [b.delay(1.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.delay(61.0) == 0.5
    assert b.delay(0.1) == 1.0
    assert b.delay(60.0) == 0.5  # exactly stable_after counts as stable


def test_reset_starts_over_at_initial() -> None:
    b = Backoff(initial=0.2, maximum=1.0)
    assert [b.delay() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert [b.delay() for _ in range(2)] == [0.2, 0.4]


def test_without_stable_after_a_long_run_does_not_reset() -> None:
    b = Backoff(initial=1.0, maximum=8.0)
    assert [b.delay(1e9) for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]


def test_no_success_yet_never_counts_as_stable() -> None:
    b = Backoff(initial=1.0, maximum=0.0, stable_after=0.0)
    assert [b.delay(None) for _ in range(3)] == [1.0, 0.0, 0.0]
    assert b.delay(0.0) == 1.0


def test_other_factor() -> None:
    b = Backoff(initial=1.0, maximum=100.0, factor=3.0)
    assert [b.delay() for _ in range(4)] == [1.0, 3.0, 9.0, 27.0]


def test_child_restarts_double_from_half_a_second_to_30s_and_start_over_after_a_minute() -> None:
    b = restart_backoff()
    assert [b.delay(1.0) for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert b.delay(60.0) == 0.5
