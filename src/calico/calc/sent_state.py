"""Desired versus sent for one kind of output: the shape every flush of the graph has.

A node marks the keys whose output may have changed; `changes()` evaluates each marked key
once, in a fixed order, keeps what it returns as sent, and returns only real changes. So
marking may be generous (an unchanged key sends nothing) and an expensive output (parsed
rules, an endpoint's tiers) is computed once per flush however often its inputs moved.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, NamedTuple, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Change(NamedTuple, Generic[K, V]):
    key: K
    old: V | None  # None: was not sent
    new: V | None  # None: to be removed


class SentState(Generic[K, V]):
    def __init__(self, desired: Callable[[K], V | None], order: Callable[[K], Any]) -> None:
        self._desired = desired
        self._order = order
        self._sent: dict[K, V] = {}
        self._dirty: set[K] = set()

    def mark(self, key: K) -> None:
        self._dirty.add(key)

    def mark_all(self, keys: Iterable[K]) -> None:
        self._dirty.update(keys)

    @property
    def pending(self) -> bool:
        return bool(self._dirty)

    def changes(self) -> list[Change[K, V]]:
        out: list[Change[K, V]] = []
        for key in sorted(self._dirty, key=self._order):
            new, old = self._desired(key), self._sent.get(key)
            if new == old:
                continue
            if new is None:
                del self._sent[key]
            else:
                self._sent[key] = new
            out.append(Change(key, old, new))
        self._dirty.clear()
        return out
