"""``LinearScanLabelIndex``: the obviously-correct, all-pairs version of ``LabelIndex``.

It exists as a test oracle and as the benchmark baseline: every update evaluates the changed
selector against every item, or the changed item against every selector.  It shares no code
with the optimised index beyond ``Selector.evaluate``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from typing import Generic, TypeVar

from calico.selector.index import MatchCallback
from calico.selector.selector import Selector

__all__ = ["LinearScanLabelIndex"]

SelId = TypeVar("SelId", bound=Hashable)
ItemId = TypeVar("ItemId", bound=Hashable)


class LinearScanLabelIndex(Generic[SelId, ItemId]):
    """Same API and callback contract as ``LabelIndex``, with no indexing at all."""

    def __init__(
        self,
        on_match_started: MatchCallback[SelId, ItemId],
        on_match_stopped: MatchCallback[SelId, ItemId],
    ) -> None:
        self._on_started = on_match_started
        self._on_stopped = on_match_stopped
        self._labels: dict[ItemId, dict[str, str]] = {}
        self._selectors: dict[SelId, Selector] = {}
        self._by_sel: dict[SelId, set[ItemId]] = {}
        self._by_item: dict[ItemId, set[SelId]] = {}

    def matches_for_selector(self, sel_id: SelId) -> frozenset[ItemId]:
        return frozenset(self._by_sel.get(sel_id, ()))

    def selectors_for_item(self, item_id: ItemId) -> frozenset[SelId]:
        return frozenset(self._by_item.get(item_id, ()))

    def selector(self, sel_id: SelId) -> Selector | None:
        return self._selectors.get(sel_id)

    def labels(self, item_id: ItemId) -> Mapping[str, str] | None:
        return self._labels.get(item_id)

    def selector_ids(self) -> Iterator[SelId]:
        return iter(self._selectors)

    def item_ids(self) -> Iterator[ItemId]:
        return iter(self._labels)

    def update_selector(self, sel_id: SelId, selector: Selector) -> None:
        self._selectors[sel_id] = selector
        evaluate = selector.evaluate
        new = {item_id for item_id, labels in self._labels.items() if evaluate(labels)}
        self._replace_selector_matches(sel_id, new)

    def delete_selector(self, sel_id: SelId) -> None:
        if self._selectors.pop(sel_id, None) is not None:
            self._replace_selector_matches(sel_id, set())

    def update_labels(self, item_id: ItemId, labels: Mapping[str, str]) -> None:
        copied = dict(labels)
        self._labels[item_id] = copied
        new = {sel_id for sel_id, sel in self._selectors.items() if sel.evaluate(copied)}
        self._replace_item_matches(item_id, new)

    def delete_labels(self, item_id: ItemId) -> None:
        if self._labels.pop(item_id, None) is not None:
            self._replace_item_matches(item_id, set())

    def _replace_selector_matches(self, sel_id: SelId, new: set[ItemId]) -> None:
        old = self._by_sel.pop(sel_id, set())
        if new:
            self._by_sel[sel_id] = new
        for item_id in old - new:
            self._by_item[item_id].discard(sel_id)
            self._on_stopped(sel_id, item_id)
        for item_id in new - old:
            self._by_item.setdefault(item_id, set()).add(sel_id)
            self._on_started(sel_id, item_id)

    def _replace_item_matches(self, item_id: ItemId, new: set[SelId]) -> None:
        old = self._by_item.pop(item_id, set())
        if new:
            self._by_item[item_id] = new
        for sel_id in old - new:
            self._by_sel[sel_id].discard(item_id)
            self._on_stopped(sel_id, item_id)
        for sel_id in new - old:
            self._by_sel.setdefault(sel_id, set()).add(item_id)
            self._on_started(sel_id, item_id)
