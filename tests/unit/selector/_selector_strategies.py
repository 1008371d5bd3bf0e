"""Hypothesis strategies for selector syntax trees and label sets (shared by the tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from calico.selector.ast import (
    All,
    And,
    Contains,
    EndsWith,
    Eq,
    Global,
    Has,
    In,
    LabelValueNode,
    Ne,
    Node,
    Not,
    NotIn,
    Or,
    StartsWith,
)

# Small pools so that generated labels actually collide with generated selectors.
KEYS = ["a", "b", "c", "k8s.io/app-name_1", "in", "contains"]
VALUES = ["", "x", "y", "xy", "yx", "'", '"', "a b", "é", "x'y"]


def _printable(value: str) -> bool:
    return not ('"' in value and "'" in value)


def keys(pool: list[str] = KEYS) -> st.SearchStrategy[str]:
    odd = st.from_regex(r"[A-Za-z0-9_./-]{1,8}", fullmatch=True)
    return st.one_of(st.sampled_from(pool), odd) if pool is KEYS else st.sampled_from(pool)


def values(pool: list[str] = VALUES) -> st.SearchStrategy[str]:
    if pool is not VALUES:
        return st.sampled_from(pool)
    return st.one_of(st.sampled_from(pool), st.text(max_size=4).filter(_printable))


_COMPARISONS: list[type[LabelValueNode]] = [Eq, Ne, Contains, StartsWith, EndsWith]


def leaves(key_pool: list[str] = KEYS, value_pool: list[str] = VALUES) -> st.SearchStrategy[Node]:
    k, v = keys(key_pool), values(value_pool)
    comparisons = st.builds(lambda t, a, b: t(a, b), st.sampled_from(_COMPARISONS), k, v)
    sets = st.builds(
        lambda t, a, b: t(a, b), st.sampled_from([In, NotIn]), k, st.lists(v, max_size=3)
    )
    return st.one_of(comparisons, sets, st.builds(Has, k), st.just(All()), st.just(Global()))


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    operands = st.lists(children, min_size=2, max_size=4).map(tuple)
    # Not(Not(x)) prints as "!!x", which Calico re-parses as x; keep trees re-parseable.
    negations = children.filter(lambda n: not isinstance(n, Not)).map(Not)
    return st.one_of(negations, operands.map(And), operands.map(Or))


def trees(
    key_pool: list[str] = KEYS, value_pool: list[str] = VALUES, max_leaves: int = 12
) -> st.SearchStrategy[Node]:
    return st.recursive(leaves(key_pool, value_pool), _extend, max_leaves=max_leaves)


def label_maps(
    key_pool: list[str] = KEYS, value_pool: list[str] = VALUES
) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(key_pool), values(value_pool), max_size=len(key_pool))
