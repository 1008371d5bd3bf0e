"""Incremental "which labelled items match which selectors" index.

Felix-style consumers (policy and IP-set calculation) hold thousands of endpoints and
selectors and need to know, incrementally, when a (selector, item) pair starts or stops
matching.  ``LabelIndex`` avoids the naive all-pairs evaluation:

* Items are indexed by label key and by (key, value).
* Each selector gets one *index term* chosen from its label restrictions (necessary
  conditions, see ``calico.selector.restrictions``): "key K has one of values V" or "key K is
  present".  A selector whose restrictions are unsatisfiable is parked (it can never match);
  one without a usable restriction is *unindexed* and checked against every item.
* A selector update evaluates only the items satisfying all its indexable restrictions (an
  intersection of index sets); an item update evaluates only the selectors whose term its
  labels satisfy, plus the unindexed ones.

Because restrictions are necessary conditions, skipping everything outside the candidates
cannot lose a match, and callbacks fire exactly once per transition.  Callbacks run after the
index state is updated and must not modify the index.

Labels are whatever mapping the caller supplies; label inheritance (profile labels overlaid
by endpoint labels) can be layered on top by passing in the merged view.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Generic, TypeVar

from calico.selector.ast import Matcher
from calico.selector.restrictions import LabelRestriction
from calico.selector.selector import Selector

__all__ = ["LabelIndex", "MatchCallback"]

SelId = TypeVar("SelId", bound=Hashable)
ItemId = TypeVar("ItemId", bound=Hashable)
MatchCallback = Callable[[SelId, ItemId], None]

# Below this many candidates, evaluating the selector beats another set intersection.
_SMALL_ENOUGH = 64


@dataclass(frozen=True, slots=True)
class _Term:
    """How a selector is indexed: by (key, one of values), by key presence, or not at all."""

    key: str | None = None  # None: unindexed (or never matches, see ``never``)
    values: frozenset[str] | None = None  # None: presence of ``key`` is enough
    never: bool = False


class LabelIndex(Generic[SelId, ItemId]):
    """Optimised, incremental selector/item match index (see module docstring)."""

    def __init__(
        self,
        on_match_started: MatchCallback[SelId, ItemId],
        on_match_stopped: MatchCallback[SelId, ItemId],
    ) -> None:
        self._on_started = on_match_started
        self._on_stopped = on_match_stopped
        self._item_labels: dict[ItemId, dict[str, str]] = {}
        self._items_by_key: dict[str, set[ItemId]] = {}
        self._items_by_kv: dict[str, dict[str, set[ItemId]]] = {}
        self._selectors: dict[SelId, tuple[Selector, _Term]] = {}
        self._matchers: dict[SelId, Matcher] = {}  # hot-path copy of each selector.matcher
        self._sels_by_key: dict[str, set[SelId]] = {}
        self._sels_by_kv: dict[tuple[str, str], set[SelId]] = {}
        self._unindexed_sels: set[SelId] = set()
        self._sel_matches: dict[SelId, set[ItemId]] = {}
        self._item_matches: dict[ItemId, set[SelId]] = {}

    # -- queries --------------------------------------------------------------------------

    def matches_for_selector(self, sel_id: SelId) -> frozenset[ItemId]:
        return frozenset(self._sel_matches.get(sel_id, ()))

    def selectors_for_item(self, item_id: ItemId) -> frozenset[SelId]:
        return frozenset(self._item_matches.get(item_id, ()))

    def selector(self, sel_id: SelId) -> Selector | None:
        entry = self._selectors.get(sel_id)
        return entry[0] if entry else None

    def labels(self, item_id: ItemId) -> Mapping[str, str] | None:
        return self._item_labels.get(item_id)

    def selector_ids(self) -> Iterator[SelId]:
        return iter(self._selectors)

    def item_ids(self) -> Iterator[ItemId]:
        return iter(self._item_labels)

    # -- selector side --------------------------------------------------------------------

    def update_selector(self, sel_id: SelId, selector: Selector) -> None:
        """Add or replace a selector, firing callbacks for every changed match."""
        old = self._selectors.get(sel_id)
        if old is not None:
            if old[0] == selector:
                return
            self._unregister(sel_id, old[1])
        term = self._choose_term(selector)
        self._selectors[sel_id] = (selector, term)
        self._matchers[sel_id] = matcher = selector.matcher
        self._register(sel_id, term)
        labels = self._item_labels
        new = {i for i in self._candidate_items(selector, term) if matcher(labels[i])}
        self._apply_selector_matches(sel_id, new)

    def delete_selector(self, sel_id: SelId) -> None:
        old = self._selectors.pop(sel_id, None)
        if old is None:
            return
        del self._matchers[sel_id]
        self._unregister(sel_id, old[1])
        self._apply_selector_matches(sel_id, set())

    def _choose_term(self, selector: Selector) -> _Term:
        """Pick the restriction admitting the fewest items now (value terms win ties)."""
        best: tuple[int, int, str] | None = None
        best_term = _Term()
        for key, r in selector.label_restrictions.items():
            if not r.possible:
                return _Term(never=True)
            if r.one_of is not None:
                by_value = self._items_by_kv.get(key, {})
                cost = sum(len(by_value.get(v, ())) for v in r.one_of)
                rank, term = (cost, 0, key), _Term(key, r.one_of)
            elif r.must_be_present:
                rank, term = (len(self._items_by_key.get(key, ())), 1, key), _Term(key)
            else:
                continue
            if best is None or rank < best:
                best, best_term = rank, term
        return best_term

    def _register(self, sel_id: SelId, term: _Term) -> None:
        if term.never:
            return
        if term.key is None:
            self._unindexed_sels.add(sel_id)
        elif term.values is None:
            self._sels_by_key.setdefault(term.key, set()).add(sel_id)
        else:
            for value in term.values:
                self._sels_by_kv.setdefault((term.key, value), set()).add(sel_id)

    def _unregister(self, sel_id: SelId, term: _Term) -> None:
        if term.never:
            return
        if term.key is None:
            self._unindexed_sels.discard(sel_id)
        elif term.values is None:
            _discard(self._sels_by_key, term.key, sel_id)
        else:
            for value in term.values:
                _discard(self._sels_by_kv, (term.key, value), sel_id)

    def _candidate_items(self, selector: Selector, term: _Term) -> Iterable[ItemId]:
        """Items that satisfy every usable restriction (a superset of the matches).

        Intersecting the per-restriction sets runs at C speed, which is far cheaper than
        evaluating the selector on each item of even the smallest set.
        """
        if term.never:
            return ()
        if term.key is None:
            return self._item_labels
        sets = [self._items_satisfying(k, r) for k, r in selector.label_restrictions.items()]
        ordered = sorted((s for s in sets if s is not None), key=len)
        result = ordered[0]
        for other in ordered[1:]:
            if len(result) <= _SMALL_ENOUGH:
                break
            result = result & other
        return result

    def _items_satisfying(self, key: str, r: LabelRestriction) -> AbstractSet[ItemId] | None:
        """Items allowed by restriction ``r`` on ``key``; None if it needs no index lookup."""
        if r.one_of is not None:
            by_value = self._items_by_kv.get(key, {})
            found = [by_value[v] for v in r.one_of if v in by_value]
            if len(found) == 1:
                return found[0]
            return set().union(*found)
        if r.must_be_present:
            return self._items_by_key.get(key, set())
        return None

    def _apply_selector_matches(self, sel_id: SelId, new: set[ItemId]) -> None:
        old = self._sel_matches.pop(sel_id, set())
        if new:
            self._sel_matches[sel_id] = new
        stopped, started = old - new, new - old
        for item_id in stopped:
            _discard(self._item_matches, item_id, sel_id)
        for item_id in started:
            self._item_matches.setdefault(item_id, set()).add(sel_id)
        for item_id in stopped:
            self._on_stopped(sel_id, item_id)
        for item_id in started:
            self._on_started(sel_id, item_id)

    # -- item side ------------------------------------------------------------------------

    def update_labels(self, item_id: ItemId, labels: Mapping[str, str]) -> None:
        """Add or replace an item's labels, firing callbacks for every changed match."""
        new_labels = dict(labels)
        old_labels = self._item_labels.get(item_id)
        if old_labels == new_labels:
            return
        if old_labels is not None:
            self._unindex_item(item_id, old_labels)
        self._item_labels[item_id] = new_labels
        self._index_item(item_id, new_labels)
        matchers = self._matchers
        new = {s for s in self._candidate_selectors(new_labels) if matchers[s](new_labels)}
        self._apply_item_matches(item_id, new)

    def delete_labels(self, item_id: ItemId) -> None:
        old_labels = self._item_labels.pop(item_id, None)
        if old_labels is None:
            return
        self._unindex_item(item_id, old_labels)
        self._apply_item_matches(item_id, set())

    def _index_item(self, item_id: ItemId, labels: Mapping[str, str]) -> None:
        for key, value in labels.items():
            self._items_by_key.setdefault(key, set()).add(item_id)
            self._items_by_kv.setdefault(key, {}).setdefault(value, set()).add(item_id)

    def _unindex_item(self, item_id: ItemId, labels: Mapping[str, str]) -> None:
        for key, value in labels.items():
            _discard(self._items_by_key, key, item_id)
            by_value = self._items_by_kv[key]
            _discard(by_value, value, item_id)
            if not by_value:
                del self._items_by_kv[key]

    def _candidate_selectors(self, labels: Mapping[str, str]) -> set[SelId]:
        candidates = set(self._unindexed_sels)
        by_key, by_kv = self._sels_by_key, self._sels_by_kv
        for key_value in labels.items():
            sels = by_key.get(key_value[0])
            if sels:
                candidates |= sels
            sels = by_kv.get(key_value)
            if sels:
                candidates |= sels
        return candidates

    def _apply_item_matches(self, item_id: ItemId, new: set[SelId]) -> None:
        old = self._item_matches.pop(item_id, set())
        if new:
            self._item_matches[item_id] = new
        stopped, started = old - new, new - old
        for sel_id in stopped:
            _discard(self._sel_matches, sel_id, item_id)
        for sel_id in started:
            self._sel_matches.setdefault(sel_id, set()).add(item_id)
        for sel_id in stopped:
            self._on_stopped(sel_id, item_id)
        for sel_id in started:
            self._on_started(sel_id, item_id)


_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V", bound=Hashable)


def _discard(index: dict[_K, set[_V]], key: _K, member: _V) -> None:
    """Remove ``member`` from ``index[key]``, dropping the set once empty (bounds memory)."""
    members = index.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del index[key]
