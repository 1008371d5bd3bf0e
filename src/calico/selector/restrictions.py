"""Necessary conditions on labels for a selector to match ("label restrictions").

Mirrors ``LabelRestrictions()`` in libcalico-go ``lib/selector/parser/ast.go``: for each
label key, what any matching label set must satisfy (present, absent, one of some values).
The result is a sound lower bound, not an exact description: a label set that violates a
restriction can never match, but one that satisfies them all may still fail to match.  This
is what lets the label index consider only a few candidate items or selectors per update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from calico.selector.ast import (
    And,
    Contains,
    EndsWith,
    Eq,
    Has,
    In,
    Node,
    Not,
    Or,
    StartsWith,
)

__all__ = ["LabelRestriction", "Restrictions", "label_restrictions"]


@dataclass(frozen=True, slots=True)
class LabelRestriction:
    """What a matching label set must satisfy for one label key."""

    must_be_present: bool = False
    must_be_absent: bool = False
    # None: no constraint on the value.  An empty set: the selector can never match.
    one_of: frozenset[str] | None = None

    @property
    def possible(self) -> bool:
        """False if no label set can satisfy this restriction."""
        if self.must_be_present and self.must_be_absent:
            return False
        return self.one_of is None or bool(self.one_of)

    def allows(self, value: str | None) -> bool:
        """Whether a label with this ``value`` (None = absent) satisfies the restriction."""
        if value is None:
            return not self.must_be_present
        if self.must_be_absent:
            return False
        return self.one_of is None or value in self.one_of


Restrictions = Mapping[str, LabelRestriction]

_PRESENT = LabelRestriction(must_be_present=True)


def label_restrictions(node: Node) -> dict[str, LabelRestriction]:
    """Per-label restrictions implied by ``node``; empty when nothing is known."""
    match node:
        case Eq(label=label, value=value):
            return {label: LabelRestriction(must_be_present=True, one_of=frozenset((value,)))}
        case In(label=label, values=values):
            return {label: LabelRestriction(must_be_present=True, one_of=frozenset(values))}
        case Has(label=label) | Contains(label=label):
            return {label: _PRESENT}
        case StartsWith(label=label) | EndsWith(label=label):
            return {label: _PRESENT}
        case Not(operand=Has(label=label)):
            # Only !has() can be inverted: !(a == "b") does not require "a" to be absent.
            return {label: LabelRestriction(must_be_absent=True)}
        case And(operands=operands):
            return _restrictions_of_and(operands)
        case Or(operands=operands):
            return _restrictions_of_or(operands)
    # !=, not in, all(), global() and other negations constrain nothing.
    return {}


def _restrictions_of_and(operands: tuple[Node, ...]) -> dict[str, LabelRestriction]:
    """Every operand must hold, so combine all their restrictions."""
    result: dict[str, LabelRestriction] = {}
    for operand in operands:
        for key, r in label_restrictions(operand).items():
            base = result.get(key)
            if base is None:
                result[key] = r
                continue
            if base.one_of is None:
                one_of = r.one_of
            elif r.one_of is None:
                one_of = base.one_of
            else:
                one_of = base.one_of & r.one_of
            result[key] = LabelRestriction(
                must_be_present=base.must_be_present or r.must_be_present,
                must_be_absent=base.must_be_absent or r.must_be_absent,
                one_of=one_of,
            )
    return result


def _restrictions_of_or(operands: tuple[Node, ...]) -> dict[str, LabelRestriction]:
    """Some operand must hold, so keep only what every operand requires."""
    result = label_restrictions(operands[0])
    for operand in operands[1:]:
        if not result:
            break
        other = label_restrictions(operand)
        merged: dict[str, LabelRestriction] = {}
        for key, r in result.items():
            merged_r = _weaker_of(r, other.get(key, LabelRestriction()))
            if merged_r.must_be_present or merged_r.must_be_absent:
                merged[key] = merged_r
        result = merged
    return result


def _weaker_of(a: LabelRestriction, b: LabelRestriction) -> LabelRestriction:
    present = a.must_be_present and b.must_be_present
    one_of: frozenset[str] | None = None
    if present and a.one_of is not None and b.one_of is not None:
        one_of = a.one_of | b.one_of
    return LabelRestriction(
        must_be_present=present,
        must_be_absent=a.must_be_absent and b.must_be_absent,
        one_of=one_of,
    )
