"""A clock for pure unit tests of code that takes a `now` callable (leases, backoffs, health
timeouts): time moves only when the test sets `now`."""

from __future__ import annotations


class ManualClock:
    """Stands in for `time.monotonic`: returns `now`, which only the test changes."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
