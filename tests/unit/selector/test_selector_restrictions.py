"""Label restrictions, ported (as data) from libcalico-go's label_restriction_test.go."""

from __future__ import annotations

import pytest

from calico.selector import LabelRestriction, parse

P = LabelRestriction(must_be_present=True)
ABSENT = LabelRestriction(must_be_absent=True)


def one_of(*values: str) -> LabelRestriction:
    return LabelRestriction(must_be_present=True, one_of=frozenset(values))


CASES: list[tuple[str, dict[str, LabelRestriction]]] = [
    ("", {}),
    ("all()", {}),
    ("global()", {}),
    ("a == 'value'", {"a": one_of("value")}),
    ("has(a)", {"a": P}),
    ("a in {'v1','v2'}", {"a": one_of("v1", "v2")}),
    ("a in {}", {"a": one_of()}),
    ("a not in {'v1','v2'}", {}),
    ("a contains 'foo'", {"a": P}),
    ("a ends with 'foo'", {"a": P}),
    ("a starts with 'foo'", {"a": P}),
    ("a != 'value'", {}),
    # AND
    ("a == 'v1' && a == 'v1'", {"a": one_of("v1")}),
    ("a == 'v1' && a == 'v2'", {"a": one_of()}),
    ("a == 'v1' && has(a)", {"a": one_of("v1")}),
    ("a in {'v1','v2'} && a in {'v2','v3'} ", {"a": one_of("v2")}),
    ("a in {'v1','v2', 'v3'} && a in {'v2','v3'} ", {"a": one_of("v2", "v3")}),
    ("has(a) && a == 'v1'", {"a": one_of("v1")}),
    ("has(a) && !has(a)", {"a": LabelRestriction(must_be_present=True, must_be_absent=True)}),
    ("a == 'v1' && b == 'v2'", {"a": one_of("v1"), "b": one_of("v2")}),
    ("a == 'v1' && all()", {"a": one_of("v1")}),
    ("all() && a == 'v1'", {"a": one_of("v1")}),
    # OR
    ("a == 'v1' || a == 'v2'", {"a": one_of("v1", "v2")}),
    ("has(a) || a == 'v2'", {"a": P}),
    ("a=='v2' || has(a)", {"a": P}),
    ("a=='v2' || has(b)", {}),
    ("a=='v2' || (has(b) && has(a))", {"a": P}),
    ("a == 'v1' || b == 'v2'", {}),
    ("a == 'v1' || all()", {}),
    ("all() || b == 'v2'", {}),
    ("!has(a) || !has(a)", {"a": ABSENT}),
    ("!has(a) || has(a)", {}),
    # NOT
    ("!(a == 'value')", {}),
    ("!has(a)", {"a": ABSENT}),
    ("!!has(a)", {"a": P}),
    ("!(!has(a))", {}),  # Calico only inverts a direct has()
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_label_restrictions(text: str, expected: dict[str, LabelRestriction]) -> None:
    assert dict(parse(text).label_restrictions) == expected
    if text:
        # An extra "all() &&" must not change anything.
        assert dict(parse(f"all() && ({text})").label_restrictions) == expected


@pytest.mark.parametrize(
    ("restriction", "possible"),
    [
        (LabelRestriction(), True),
        (P, True),
        (ABSENT, True),
        (one_of("x"), True),
        (one_of(), False),
        (LabelRestriction(must_be_present=True, must_be_absent=True), False),
    ],
)
def test_possible(restriction: LabelRestriction, possible: bool) -> None:
    assert restriction.possible is possible


def test_allows() -> None:
    assert one_of("x").allows("x") and not one_of("x").allows("y")
    assert not one_of("x").allows(None)
    assert ABSENT.allows(None) and not ABSENT.allows("x")
    assert P.allows("") and not P.allows(None)
    assert LabelRestriction().allows(None)
