"""Capped exponential back-off between retries (pure): the one rule every retry loop uses.

`delay()` hands out the next wait, `initial` first and then `factor` times the previous one,
never more than `maximum`; `reset()` after a success starts over at `initial`. A caller that
knows how long things went well before the failure passes it as `ran_for` instead: a spell of
at least `stable_after` seconds counts as a fresh start (a child process that ran for a minute,
a syncer that stayed in sync).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    initial: float
    maximum: float
    factor: float = 2.0
    stable_after: float = math.inf
    _next: float | None = field(default=None, repr=False)

    def delay(self, ran_for: float | None = None) -> float:
        """The wait before the next attempt; `ran_for` None: nothing went well since the last."""
        if self._next is None or (ran_for is not None and ran_for >= self.stable_after):
            self._next = self.initial
        delay = self._next
        self._next = min(delay * self.factor, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = None
