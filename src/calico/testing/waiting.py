"""Polling for a condition in tests, with a failure that says what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.1,
) -> float:
    """Poll until `predicate()` is truthy; returns the seconds waited. AssertionError naming
    `what` once `timeout` seconds pass."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)
    return time.monotonic() - start
