"""Parse/evaluate, error and canonical-form tables.

The evaluate and bad-selector cases are ported, as data, from libcalico-go's
lib/selector/parser/parser_test.go, with extra cases for precedence, quoting and positions.
"""

from __future__ import annotations

import pickle

import pytest

from calico.selector import ALL, Selector, SelectorError, normalise, parse, validate
from calico.selector.ast import And, Eq, Has, In, NotIn
from calico.selector.parser import MAX_DEPTH

L = dict[str, str]

# (selector, label sets that must match, label sets that must not match)
EVAL_CASES: list[tuple[str, list[L], list[L]]] = [
    ('a == "b"', [{"a": "b"}, {"a": "b", "c": "d"}], [{}, {"a": "c"}, {"c": "d"}]),
    (
        'a == "b" && c == "d"',
        [{"a": "b", "c": "d"}],
        [{}, {"a": "b", "c": "e"}, {"a": "c", "c": "d"}, {"c": "d"}, {"a": "b"}],
    ),
    (
        'a == "b" || c == "d"',
        [{"a": "b", "c": "d"}, {"a": "b"}, {"c": "d"}],
        [{}, {"a": "e", "c": "e"}, {"c": "e"}, {"a": "e"}],
    ),
    ('a in {"\'", \'"\', "c"}', [{"a": "c"}, {"a": '"'}, {"a": "'"}], [{}, {"a": "e"}]),
    ('a not in {"\'", \'"\', "c"}', [{}, {"a": "e"}], [{"a": "c"}, {"a": '"'}, {"a": "'"}]),
    ("a == 'a'", [{"a": "a"}], [{"a": "b"}, {}]),
    ('a != "b"', [{"a": "a"}, {}], [{"a": "b"}]),
    ('a != "a"', [{}], [{"a": "a"}]),
    (
        'a contains "a"',
        [{"a": "a"}, {"a": "bab"}, {"a": "aaa", "b": "c"}],
        [{}, {"a": "b"}, {"b": "aaa"}],
    ),
    ('a contains ""', [{"a": ""}, {"a": "x"}], [{}]),
    (
        'a starts with "a"',
        [{"a": "a"}, {"a": "abb"}, {"a": "aaa", "b": "c"}],
        [{}, {"a": "b"}, {"a": "baa"}, {"b": "aaa"}],
    ),
    (
        'a ends with "a"',
        [{"a": "a"}, {"a": "bba"}, {"a": "aaa", "b": "c"}],
        [{}, {"a": "b"}, {"a": "aab"}, {"b": "aaa"}],
    ),
    ('a in {"a"}', [{"a": "a"}], [{"a": "b"}, {}]),
    ('!a in {"a"}', [{"a": "b"}, {}], [{"a": "a"}]),
    ('a in {"a", "b"}', [{"a": "a"}, {"a": "b"}], [{"a": "c"}]),
    ('a not in {"d", "e"}', [{"a": "a"}, {}], [{"a": "d"}]),
    ("a in {}", [], [{}, {"a": ""}]),
    ("a not in {}", [{}, {"a": ""}], []),
    ('a in {"x",}', [{"a": "x"}], [{"a": ""}]),
    ("has(a)", [{"a": "b"}, {"a": ""}], [{}, {"b": "a"}]),
    ("!has(a)", [{"b": "b"}, {}], [{"a": "b"}]),
    ("", [{}, {"a": "b"}], []),
    (" ", [{}], []),
    ("\t", [{}], []),
    ("all()", [{}, {"a": "b"}], []),
    (" all()", [{}], []),
    ("global()", [{}, {"a": "b"}], []),
    (" global()", [{}, {"projectcalico.org/namespace": "x"}], []),
    ("!all()", [], [{}, {"a": "b"}]),
    ("has(b)", [], [{"a": "b"}]),
    ("!!has(b)", [], [{"a": "b"}]),
    ("! has(a)", [], [{"a": "b"}]),
    ("!!! has(a)", [], [{"a": "b"}]),
    ("!! ! has(a)", [], [{"a": "b"}]),
    ("! !!has(a)", [], [{"a": "b"}]),
    # Boolean combinations.
    ("a == 'a1' && b == 'b1'", [{"a": "a1", "b": "b1"}], []),
    ("a == 'a1' && b != 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("a != 'a1' && b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("a != 'a1' && !b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("!a == 'a1' && b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("has(a) && !has(b)", [{"a": "a"}], [{"a": "a", "b": "b"}]),
    ("!has(b) && has(a)", [{"a": "a"}], []),
    ("!(!has(a) || has(b))", [{"a": "a"}], [{"a": "a", "b": "b"}]),
    ("!(has(b) || !has(a))", [{"a": "a"}], []),
    ("a == 'a1' || b != 'b1'", [{"a": "a1", "b": "b1"}], []),
    ("a != 'a1' || b == 'b1'", [{"a": "a1", "b": "b1"}], []),
    ("a != 'a1' || b != 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("! a == 'a1' || ! b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
    # Precedence: ! > && > ||.
    ("has(a) || has(b) && has(c)", [{"a": ""}, {"b": "", "c": ""}], [{"b": ""}, {"c": ""}]),
    ("(has(a) || has(b)) && has(c)", [{"a": "", "c": ""}], [{"a": ""}, {"b": ""}]),
    ("!has(a) && has(b)", [{"b": ""}], [{"a": "", "b": ""}]),
    ("!(has(a) && has(b))", [{"a": ""}, {}], [{"a": "", "b": ""}]),
    # Keywords as label names, odd but legal label characters.
    ('contains contains "tain"', [{"contains": "contains"}], [{}]),
    ('in in {"in"}', [{"in": "in"}], [{"in": "out"}]),
    ('k8s.io/app-name_1 == "x"', [{"k8s.io/app-name_1": "x"}], [{"k8s.io/app-name_1": "y"}]),
    ('-/. == "dots"', [{"-/.": "dots"}], []),
    ('a == "é ü"', [{"a": "é ü"}], [{"a": "e u"}]),
]


@pytest.mark.parametrize(("text", "matches", "non_matches"), EVAL_CASES)
def test_evaluate(text: str, matches: list[L], non_matches: list[L]) -> None:
    sel = parse(text)
    again = parse(sel.canonical)
    for labels in matches:
        assert sel.evaluate(labels), labels
        assert sel.root.evaluate(labels), labels
        assert again.evaluate(labels), labels
    for labels in non_matches:
        assert not sel.evaluate(labels), labels
        assert not sel.root.evaluate(labels), labels
        assert not again.evaluate(labels), labels


# (bad selector, 0-based position of the reported problem)
BAD_SELECTORS: list[tuple[str, int]] = [
    ("b == b", 5),  # label == label
    ("b contains b", 11),
    ("b starts with b", 14),
    ("b ends with b", 12),
    ("'b1' == b", 0),  # literal on the left
    ("b", 1),  # bare label
    ("a b", 2),
    ("!", 1),
    ('foo == "bar" &', 13),
    ('foo == "bar" |', 13),
    ("foo != ||", 7),
    ('foo in {"", ||', 12),
    ('foo in ""', 7),  # needs a set literal
    ('"FOO', 0),
    ("\"FOO'", 0),
    ("'FOO", 0),
    ("(", 1),
    ('(a == "foo"', 11),
    (")", 0),
    ("()", 1),
    ("%", 0),
    ('a == "b" && %', 12),
    ('a == "b" || %', 12),
    ("a ", 2),
    ("has(foo) &&", 11),
    ("app ==", 6),
    ('a in {"x" "y"}', 10),
    ("a in {,}", 6),
    ('a in {"x",,}', 10),
    ('a in {"x"', 9),
    ('a in ("x")', 5),
    ('a == "b" )', 9),
    ('a == "b" c == "d"', 9),
    ("has(a) has(b)", 7),
    ("a == 'b' && || c == 'd'", 12),
    ("has (a)", 4),  # "has" is a label here, then a stray "("
    ("all ()", 4),
    ("a\n== 'b'", 1),
    ("&& has(a)", 0),
]


@pytest.mark.parametrize(("text", "position"), BAD_SELECTORS)
def test_bad_selectors(text: str, position: int) -> None:
    with pytest.raises(SelectorError) as info:
        parse(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.position == position
    assert err.selector == text
    assert str(err).startswith(f"invalid selector '{text}': ")
    assert str(err).endswith(f" at position {position}")
    with pytest.raises(SelectorError):
        validate(text)


def test_error_message_format() -> None:
    with pytest.raises(SelectorError) as info:
        parse("app ==")
    assert str(info.value) == "invalid selector 'app ==': expected a string literal at position 6"
    assert info.value.reason == "expected a string literal"
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.position, str(copy)) == (6, str(info.value))


def test_deep_nesting_is_bounded() -> None:
    ok = "(" * MAX_DEPTH + "has(a)" + ")" * MAX_DEPTH
    assert parse(ok).evaluate({"a": "x"})
    with pytest.raises(SelectorError) as info:
        parse("(" * (MAX_DEPTH + 1) + "has(a)" + ")" * (MAX_DEPTH + 1))
    assert info.value.position == MAX_DEPTH


# (input, canonical form, UID where Calico's tests pin one)
CANONICAL_CASES: list[tuple[str, str, str | None]] = [
    ("", "all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    (" all() ", "all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    (" (all() )", "all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    ("! (has( b)||! has(a ))", "!(has(b) || !has(a))", "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q"),
    (
        '! (a == "b"&&! c != "d")',
        '!(a == "b" && !c != "d")',
        "s:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w",
    ),
    ('a == "\'"', 'a == "\'"', None),
    ("a == '\"'", "a == '\"'", None),
    ("a contains '\"'", "a contains '\"'", None),
    ('a contains "\'"', 'a contains "\'"', None),
    ("a startswith '\"'", "a starts with '\"'", None),
    ('a endswith "\'"', 'a ends with "\'"', None),
    ("a!='\"'", "a != '\"'", None),
    ("a == 'plain'", 'a == "plain"', None),
    ('a in {"d"}', 'a in {"d"}', None),
    ('a in {"a", "b"}', 'a in {"a", "b"}', None),
    ('a in {"d", "a", "b"}', 'a in {"a", "b", "d"}', None),
    ('a in {"z", "z", "x", "y", "x", "a"}', 'a in {"a", "x", "y", "z"}', None),
    ("a in {'\"', \"'\"}", "a in {'\"', \"'\"}", None),
    ("a notin{}", "a not in {}", None),
    ("a in {'x',}", 'a in {"x"}', None),
    ("global()", "global()", None),
    ("has(a)&&has(b)&&has(c)", "(has(a) && has(b) && has(c))", None),
    ("has(a)||has(b)&&has(c)", "(has(a) || (has(b) && has(c)))", None),
    ("(has(a)||has(b))&&has(c)", "((has(a) || has(b)) && has(c))", None),
    ("(has(a)&&has(b))&&has(c)", "((has(a) && has(b)) && has(c))", None),
    ("((((has(a)))))", "has(a)", None),
    ("!(k == 'v')", '!k == "v"', None),
    ("!!has(a)", "has(a)", None),
    (
        "!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
        '!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})',
        None,
    ),
]


@pytest.mark.parametrize(("text", "canonical", "uid"), CANONICAL_CASES)
def test_canonical_form(text: str, canonical: str, uid: str | None) -> None:
    sel = parse(text)
    assert sel.canonical == canonical
    assert str(sel) == canonical
    again = parse(canonical)
    assert again.canonical == canonical  # fixed point
    assert again == sel
    assert again.root == sel.root
    assert again.unique_id() == sel.unique_id()
    if uid is not None:
        assert sel.unique_id() == uid


def test_double_negation_through_parentheses_mirrors_calico() -> None:
    # Calico renders Not(Not(x)) as "!!x", which re-parses as x: the one non-fixed point.
    sel = parse("!(!has(a))")
    assert sel.canonical == "!!has(a)"
    assert parse(sel.canonical).canonical == "has(a)"
    assert sel != parse("has(a)")
    assert sel.evaluate({"a": ""}) and not sel.evaluate({})


def test_selector_value_semantics() -> None:
    a, b = parse('x == "1" && has(y)'), Selector(parse("(x=='1'&&has(y))").root)
    assert a == b and hash(a) == hash(b) and a is not b
    assert a != parse("has(y) && x == '1'")
    assert a != '(x == "1" && has(y))'
    assert repr(a) == "Selector('(x == \"1\" && has(y))')"
    assert {a, b} == {a}
    with pytest.raises(AttributeError):
        a._canonical = "all()"
    assert parse('x == "1" && has(y)') is a  # cached
    assert pickle.loads(pickle.dumps(a)) == a
    assert parse("") == ALL and ALL.unique_id() == "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"


def test_label_names() -> None:
    sel = parse("a == 'x' || !has(b) && c not in {} && d contains 'q' || all()")
    assert sel.label_names == frozenset("abcd")
    assert parse("global()").label_names == frozenset()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('  a=="b"  ', 'a == "b"'),
        ("", "all()"),
        ("not valid ==", "not valid =="),
        ("  has(x ", "has(x"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_tree_constructors_reject_unprintable_trees() -> None:
    with pytest.raises(ValueError):
        Eq("bad label", "x")
    with pytest.raises(ValueError):
        Eq("a", "both ' and \"")
    with pytest.raises(ValueError):
        In("a", ["ok", "both ' and \""])
    with pytest.raises(ValueError):
        And((Has("a"),))
    assert In("a", ["b", "a", "b"]).values == ("a", "b")
    in_node: object = In("a", ["x"])
    assert in_node != NotIn("a", ["x"])
