"""LabelIndex against the LinearScanLabelIndex oracle, plus direct behaviour checks."""

from __future__ import annotations

import random
from typing import Any

from _selector_strategies import label_maps, trees
from hypothesis import given, settings
from hypothesis import strategies as st

from calico.selector import LabelIndex, LinearScanLabelIndex, Selector, parse

Pair = tuple[int, str]


class Recorder:
    """Tracks the match set implied by callbacks, rejecting duplicate transitions."""

    def __init__(self) -> None:
        self.pairs: set[Pair] = set()
        self.events: list[tuple[str, int, str]] = []

    def started(self, sel_id: int, item_id: str) -> None:
        assert (sel_id, item_id) not in self.pairs, "duplicate start"
        self.pairs.add((sel_id, item_id))
        self.events.append(("start", sel_id, item_id))

    def stopped(self, sel_id: int, item_id: str) -> None:
        assert (sel_id, item_id) in self.pairs, "stop without start"
        self.pairs.remove((sel_id, item_id))
        self.events.append(("stop", sel_id, item_id))


Index = LabelIndex[int, str] | LinearScanLabelIndex[int, str]


def make_pair() -> tuple[Index, Recorder, Index, Recorder]:
    fast_rec, slow_rec = Recorder(), Recorder()
    fast: Index = LabelIndex(fast_rec.started, fast_rec.stopped)
    slow: Index = LinearScanLabelIndex(slow_rec.started, slow_rec.stopped)
    return fast, fast_rec, slow, slow_rec


def apply(index: Index, op: tuple[Any, ...]) -> None:
    match op:
        case ("sel", sel_id, tree):
            index.update_selector(sel_id, Selector(tree))
        case ("del_sel", sel_id):
            index.delete_selector(sel_id)
        case ("item", item_id, labels):
            index.update_labels(item_id, labels)
        case ("del_item", item_id):
            index.delete_labels(item_id)


def check_same(
    fast: Index, fast_rec: Recorder, slow: Index, slow_rec: Recorder, sels: range, items: list[str]
) -> None:
    assert fast_rec.pairs == slow_rec.pairs
    derived = {(s, i) for s in sels for i in fast.matches_for_selector(s)}
    assert derived == fast_rec.pairs
    for s in sels:
        assert fast.matches_for_selector(s) == slow.matches_for_selector(s), s
    for i in items:
        assert fast.selectors_for_item(i) == slow.selectors_for_item(i), i


KEYS = ["a", "b", "c"]
VALUES = ["x", "y", ""]
SEL_IDS = range(5)
ITEM_IDS = ["i0", "i1", "i2", "i3", "i4", "i5"]

ops = st.one_of(
    st.tuples(st.just("sel"), st.sampled_from(SEL_IDS), trees(KEYS, VALUES, max_leaves=5)),
    st.tuples(st.just("del_sel"), st.sampled_from(SEL_IDS)),
    st.tuples(st.just("item"), st.sampled_from(ITEM_IDS), label_maps(KEYS, VALUES)),
    st.tuples(st.just("item"), st.sampled_from(ITEM_IDS), label_maps(KEYS, VALUES)),
    st.tuples(st.just("del_item"), st.sampled_from(ITEM_IDS)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=40))
def test_index_matches_oracle(operations: list[tuple[Any, ...]]) -> None:
    fast, fast_rec, slow, slow_rec = make_pair()
    for op in operations:
        apply(fast, op)
        apply(slow, op)
        check_same(fast, fast_rec, slow, slow_rec, SEL_IDS, ITEM_IDS)


def test_randomised_bulk_against_oracle() -> None:
    rng = random.Random(1234)
    keys, vals = ["app", "tier", "env", "ns"], [f"v{n}" for n in range(6)]
    templates = [
        "app == '{v}'",
        "app in {{'{v}', '{w}'}} && tier != '{w}'",
        "has(tier) && env == '{v}'",
        "env != '{v}'",
        "!has(ns) || ns == '{v}'",
        "app starts with 'v' && (ns == '{v}' || tier == '{w}')",
        "all()",
        "tier not in {{'{v}'}}",
        "app == '{v}' && app == '{w}'",
    ]

    def rand_labels() -> dict[str, str]:
        return {k: rng.choice(vals) for k in keys if rng.random() < 0.7}

    def rand_sel() -> Selector:
        tmpl = rng.choice(templates)
        return parse(tmpl.format(v=rng.choice(vals), w=rng.choice(vals)))

    fast, fast_rec, slow, slow_rec = make_pair()
    items = [f"ep{n}" for n in range(120)]
    sels = range(40)
    for step in range(1500):
        roll = rng.random()
        if roll < 0.45:
            op: tuple[Any, ...] = ("item", rng.choice(items), rand_labels())
        elif roll < 0.55:
            op = ("del_item", rng.choice(items))
        elif roll < 0.9:
            op = ("sel", rng.choice(sels), rand_sel().root)
        else:
            op = ("del_sel", rng.choice(sels))
        apply(fast, op)
        apply(slow, op)
        if step % 25 == 0:
            check_same(fast, fast_rec, slow, slow_rec, sels, items)
    check_same(fast, fast_rec, slow, slow_rec, sels, items)


def test_basic_transitions_and_queries() -> None:
    rec = Recorder()
    idx: LabelIndex[int, str] = LabelIndex(rec.started, rec.stopped)
    idx.update_selector(1, parse("app == 'web'"))
    idx.update_labels("ep1", {"app": "web"})
    assert rec.events == [("start", 1, "ep1")]
    idx.update_labels("ep1", {"app": "web"})  # no change, no events
    idx.update_selector(1, parse("app=='web'"))  # same canonical form, no events
    assert len(rec.events) == 1
    idx.update_labels("ep1", {"app": "db"})
    assert rec.events[-1] == ("stop", 1, "ep1")
    idx.update_selector(1, parse("app in {'db', 'web'}"))
    assert rec.events[-1] == ("start", 1, "ep1")
    assert idx.matches_for_selector(1) == {"ep1"}
    assert idx.selectors_for_item("ep1") == {1}
    assert idx.labels("ep1") == {"app": "db"}
    assert idx.selector(1) == parse("app in {'db', 'web'}")
    assert list(idx.selector_ids()) == [1] and list(idx.item_ids()) == ["ep1"]
    idx.delete_selector(1)
    assert rec.events[-1] == ("stop", 1, "ep1") and not rec.pairs
    idx.delete_selector(1)
    idx.delete_labels("ep1")
    idx.delete_labels("missing")
    assert idx.matches_for_selector(1) == frozenset()
    assert idx.selectors_for_item("ep1") == frozenset()
    assert idx.selector(1) is None and idx.labels("ep1") is None


def test_caller_mapping_is_copied() -> None:
    rec = Recorder()
    idx: LabelIndex[int, str] = LabelIndex(rec.started, rec.stopped)
    labels = {"a": "x"}
    idx.update_labels("i", labels)
    labels["a"] = "y"
    idx.update_selector(0, parse("a == 'x'"))
    assert idx.matches_for_selector(0) == {"i"}


def test_unsatisfiable_and_unindexed_selectors() -> None:
    rec = Recorder()
    idx: LabelIndex[int, str] = LabelIndex(rec.started, rec.stopped)
    idx.update_selector(0, parse("a == 'x' && a == 'y'"))
    idx.update_selector(1, parse("has(a) && !has(a)"))
    idx.update_selector(2, parse("a in {}"))
    idx.update_selector(3, parse("!has(a)"))
    idx.update_selector(4, parse("global()"))
    idx.update_labels("i", {"a": "x"})
    idx.update_labels("j", {})
    assert idx.selectors_for_item("i") == {4}
    assert idx.selectors_for_item("j") == {3, 4}
