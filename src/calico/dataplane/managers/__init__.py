"""Managers: turn calculation messages into desired driver state (no kernel I/O).

Each manager's `on_update` is cheap and only records intent (marking drivers dirty);
`complete_deferred_work` runs once per dataplane apply, before the drivers write, for work
that is best done once per batch. The loop then applies drivers in dependency order.
"""

from __future__ import annotations

from typing import Protocol

from calico.calc.messages import Message


class Manager(Protocol):
    def on_update(self, msg: Message) -> None: ...

    def complete_deferred_work(self) -> None: ...
