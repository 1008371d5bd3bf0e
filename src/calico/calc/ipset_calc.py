"""IP set membership, maintained incrementally from a label index (pure).

Role: for every IP set that some sent rule uses, keep its members as reference counts of
contributions (two endpoints may share an address), and remember what changed since the
last flush so the sequencer can send full updates for new sets and deltas for the others.

Inputs: `swap_references` (the IP sets of sent rules, as rules change; a set lives while
some sent rule references it), item upserts and removals (from the label inheritance
index). Outputs: `take_changes()` -> (new sets, deltas, removed set IDs).
Invariant: members(set) == union of contributions of items currently matching it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from calico.calc.items import Item, ItemKey
from calico.calc.messages import IPSetDeltaUpdate, IPSetRemove, IPSetUpdate
from calico.calc.rule_scanner import IPSetSpec, Specs
from calico.selector import LabelIndex


@dataclass(slots=True)
class _SetState:
    spec: IPSetSpec
    members: Counter[str] = field(default_factory=Counter)
    added: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)


def contributions(spec: IPSetSpec, item: Item) -> list[str]:
    """The members one matching item adds to a set."""
    if spec.port is None:
        return list(item.nets)
    protocol, name = spec.port
    addresses = [net.split("/")[0] for net in item.nets if net.endswith(("/32", "/128"))]
    return [
        f"{address},{protocol}:{port.port}"
        for port in item.ports
        if port.name == name and port.protocol == protocol
        for address in addresses
    ]


class IPSetCalculator:
    def __init__(self) -> None:
        self._sets: dict[str, _SetState] = {}
        self._refs: Counter[str] = Counter()
        self._items: dict[ItemKey, Item] = {}
        self._labels: dict[ItemKey, dict[str, str]] = {}
        self._index: LabelIndex[str, ItemKey] = LabelIndex(self._on_match, self._on_unmatch)
        self._new: set[str] = set()  # sets never sent (full update due)
        self._gone: set[str] = set()  # sets sent and since removed
        self._touched: set[str] = set()  # sets whose members changed since the last flush

    # -- sets -----------------------------------------------------------------------------

    def swap_references(self, old: Specs, new: Specs) -> None:
        """A sent rule set changed: reference the new IP sets before releasing the old ones,
        so a set both use is not torn down and rebuilt."""
        for set_id, spec in new.items():
            self._refs[set_id] += 1
            if self._refs[set_id] == 1:
                self._add_set(spec)
        for set_id in old:
            self._refs[set_id] -= 1
            if self._refs[set_id] == 0:
                del self._refs[set_id]
                self._remove_set(set_id)

    def _add_set(self, spec: IPSetSpec) -> None:
        state = _SetState(spec)
        self._sets[spec.id] = state
        self._gone.discard(spec.id)
        self._new.add(spec.id)
        if spec.selector is not None:
            self._index.update_selector(spec.id, spec.selector)
        else:
            state.members.update(spec.nets)

    def _remove_set(self, set_id: str) -> None:
        if self._sets[set_id].spec.selector is not None:
            self._index.delete_selector(set_id)  # unmatch callbacks still see the set
        del self._sets[set_id]
        if set_id in self._new:
            self._new.discard(set_id)
        else:
            self._gone.add(set_id)

    # -- items ----------------------------------------------------------------------------

    def on_item_update(self, key: ItemKey, item: Item, labels: dict[str, str]) -> None:
        old = self._items.get(key)
        if old is not None and (old.nets != item.nets or old.ports != item.ports):
            for set_id in self._index.selectors_for_item(key):
                self._contribute(set_id, old, -1)
                self._contribute(set_id, item, +1)
        self._items[key] = item
        if self._labels.get(key) != labels:
            self._labels[key] = labels
            self._index.update_labels(key, labels)

    def on_item_remove(self, key: ItemKey) -> None:
        if key in self._items:
            self._index.delete_labels(key)
            del self._items[key]
            self._labels.pop(key, None)

    # -- flush ----------------------------------------------------------------------------

    def take_changes(self) -> tuple[list[IPSetUpdate], list[IPSetDeltaUpdate], list[IPSetRemove]]:
        new = [
            IPSetUpdate(set_id, self._sets[set_id].spec.type, frozenset(self._sets[set_id].members))
            for set_id in sorted(self._new)
        ]
        deltas = []
        for set_id in sorted(self._touched):  # not every set: flushes outnumber changes
            state = self._sets.get(set_id)
            if state is None:
                continue  # removed since
            if set_id not in self._new and (state.added or state.removed):
                deltas.append(
                    IPSetDeltaUpdate(set_id, frozenset(state.added), frozenset(state.removed))
                )
            state.added.clear()
            state.removed.clear()
        self._touched.clear()
        removed = [IPSetRemove(set_id) for set_id in sorted(self._gone)]
        self._new.clear()
        self._gone.clear()
        return new, deltas, removed

    # -- internals ------------------------------------------------------------------------

    def _on_match(self, set_id: str, key: ItemKey) -> None:
        self._contribute(set_id, self._items[key], +1)

    def _on_unmatch(self, set_id: str, key: ItemKey) -> None:
        self._contribute(set_id, self._items[key], -1)

    def _contribute(self, set_id: str, item: Item, sign: int) -> None:
        state = self._sets[set_id]
        members = state.members
        if set_id in self._new:  # sent whole at the next flush: no delta to keep
            for member in contributions(state.spec, item):
                count = members[member] + sign
                if count > 0:
                    members[member] = count
                else:
                    del members[member]
            return
        self._touched.add(set_id)
        for member in contributions(state.spec, item):
            count = members[member] + sign
            if count > 0:
                if member not in members:
                    self._note(state, member, added=True)
                members[member] = count
            else:
                del members[member]
                self._note(state, member, added=False)

    @staticmethod
    def _note(state: _SetState, member: str, added: bool) -> None:
        gained, lost = (state.added, state.removed) if added else (state.removed, state.added)
        if member in lost:
            lost.discard(member)
        else:
            gained.add(member)
