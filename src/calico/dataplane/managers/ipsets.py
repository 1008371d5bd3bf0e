"""IP set messages -> the `IPSets` drivers of every enabled IP family.

The calculation graph sends family-agnostic sets; each driver keeps only its own family's
members, so one message fans out to both drivers unchanged. Writing is left to the loop
(`apply_updates()` before iptables, `apply_deletions()` after).
"""

from __future__ import annotations

from collections.abc import Sequence

from calico.calc.messages import IPSetDeltaUpdate, IPSetRemove, IPSetUpdate, Message
from calico.dataplane.drivers.ipsets import IPSets


class IPSetsManager:
    def __init__(self, drivers: Sequence[IPSets]) -> None:
        self._drivers = list(drivers)

    def on_update(self, msg: Message) -> None:
        for driver in self._drivers:
            match msg:
                case IPSetUpdate(id=set_id, type=set_type, members=members):
                    driver.set_members(set_id, set_type, members)
                case IPSetDeltaUpdate(id=set_id, added=added, removed=removed):
                    driver.remove_members(set_id, removed)
                    driver.add_members(set_id, added)
                case IPSetRemove(id=set_id):
                    driver.remove(set_id)

    def complete_deferred_work(self) -> None:
        """Nothing to batch: the drivers already hold the merged desired state."""
