"""Tokenizer tables, ported (as data) from libcalico-go's tokenizer_test.go plus edge cases."""

from __future__ import annotations

import pytest

from calico.selector import SelectorError
from calico.selector.tokenizer import MAX_LABEL_LENGTH, Kind, is_valid_label, tokenize

K = Kind

TOKEN_CASES: list[tuple[str, list[tuple[Kind, str]]]] = [
    ('a=="b"', [(K.LABEL, "a"), (K.EQ, ""), (K.STRING, "b")]),
    ('label == "value"', [(K.LABEL, "label"), (K.EQ, ""), (K.STRING, "value")]),
    ('label contains "value"', [(K.LABEL, "label"), (K.CONTAINS, ""), (K.STRING, "value")]),
    (
        'contains contains "contains"',
        [(K.LABEL, "contains"), (K.CONTAINS, ""), (K.STRING, "contains")],
    ),
    (
        "contains contains 'contains'",
        [(K.LABEL, "contains"), (K.CONTAINS, ""), (K.STRING, "contains")],
    ),
    ('label contains"value"', [(K.LABEL, "label"), (K.CONTAINS, ""), (K.STRING, "value")]),
    ('label startswith "v"', [(K.LABEL, "label"), (K.STARTS_WITH, ""), (K.STRING, "v")]),
    ('label endswith "v"', [(K.LABEL, "label"), (K.ENDS_WITH, ""), (K.STRING, "v")]),
    ('label starts with "v"', [(K.LABEL, "label"), (K.STARTS_WITH, ""), (K.STRING, "v")]),
    ('label starts \t with "v"', [(K.LABEL, "label"), (K.STARTS_WITH, ""), (K.STRING, "v")]),
    ('label ends  with "v"', [(K.LABEL, "label"), (K.ENDS_WITH, ""), (K.STRING, "v")]),
    ('startswith starts with "v"', [(K.LABEL, "startswith"), (K.STARTS_WITH, ""), (K.STRING, "v")]),
    ('endswith ends with "v"', [(K.LABEL, "endswith"), (K.ENDS_WITH, ""), (K.STRING, "v")]),
    (
        'a not in "bar" && !has(foo) || b in c',
        [
            (K.LABEL, "a"),
            (K.NOT_IN, ""),
            (K.STRING, "bar"),
            (K.AND, ""),
            (K.NOT, ""),
            (K.HAS, "foo"),
            (K.OR, ""),
            (K.LABEL, "b"),
            (K.IN, ""),
            (K.LABEL, "c"),
        ],
    ),
    (
        'a  not  in  "bar"  &&  ! has( foo )  ||  b  in  c ',
        [
            (K.LABEL, "a"),
            (K.NOT_IN, ""),
            (K.STRING, "bar"),
            (K.AND, ""),
            (K.NOT, ""),
            (K.HAS, "foo"),
            (K.OR, ""),
            (K.LABEL, "b"),
            (K.IN, ""),
            (K.LABEL, "c"),
        ],
    ),
    (
        'a notin"bar"&&!has(foo)||b in"c"',
        [
            (K.LABEL, "a"),
            (K.NOT_IN, ""),
            (K.STRING, "bar"),
            (K.AND, ""),
            (K.NOT, ""),
            (K.HAS, "foo"),
            (K.OR, ""),
            (K.LABEL, "b"),
            (K.IN, ""),
            (K.STRING, "c"),
        ],
    ),
    ("has(calico/k8s_ns)", [(K.HAS, "calico/k8s_ns")]),
    ("has(calico/k8s_NS-.1/role)", [(K.HAS, "calico/k8s_NS-.1/role")]),
    (
        'calico/k8s_ns == "kube-system" && k8s-app == "kube-dns"',
        [
            (K.LABEL, "calico/k8s_ns"),
            (K.EQ, ""),
            (K.STRING, "kube-system"),
            (K.AND, ""),
            (K.LABEL, "k8s-app"),
            (K.EQ, ""),
            (K.STRING, "kube-dns"),
        ],
    ),
    ("a not in {}", [(K.LABEL, "a"), (K.NOT_IN, ""), (K.LBRACE, ""), (K.RBRACE, "")]),
    (
        'a not in {"a","B"}',
        [
            (K.LABEL, "a"),
            (K.NOT_IN, ""),
            (K.LBRACE, ""),
            (K.STRING, "a"),
            (K.COMMA, ""),
            (K.STRING, "B"),
            (K.RBRACE, ""),
        ],
    ),
    ("global()", [(K.GLOBAL, "")]),
    ("all( )", [(K.ALL, "")]),
    # Keywords are plain labels unless they follow a label.
    ('in == "x"', [(K.LABEL, "in"), (K.EQ, ""), (K.STRING, "x")]),
    ('has == "x"', [(K.LABEL, "has"), (K.EQ, ""), (K.STRING, "x")]),
    ("!!a", [(K.NOT, ""), (K.NOT, ""), (K.LABEL, "a")]),
    ("a!='x'", [(K.LABEL, "a"), (K.NE, ""), (K.STRING, "x")]),
    # Literals keep everything between the delimiters, including the other quote.
    ("'say \"hi\"'", [(K.STRING, 'say "hi"')]),
    ('"it\'s"', [(K.STRING, "it's")]),
    ('""', [(K.STRING, "")]),
    ("", []),
    (" \t ", []),
]


@pytest.mark.parametrize(("text", "expected"), TOKEN_CASES)
def test_tokenize(text: str, expected: list[tuple[Kind, str]]) -> None:
    tokens = tokenize(text)
    assert [(t.kind, t.value) for t in tokens] == [*expected, (K.EOF, "")]
    assert tokens[-1].pos == len(text)


def test_token_positions() -> None:
    tokens = tokenize('  ab == "c" && has( d )')
    assert [t.pos for t in tokens] == [2, 5, 8, 12, 15, 23]


BAD_TOKENS: list[tuple[str, int]] = [
    ('label starts foo "value"', 6),
    ('label ends foo "value"', 6),
    ('label squiggles "value"', 6),
    ('a containsx "v"', 2),
    ('a inx {"v"}', 2),
    ('a not inx {"v"}', 2),
    ('a = "b"', 2),
    ('a == "b" & c', 9),
    ('a == "b" | c', 9),
    ('"abc', 0),
    ("x == 'abc", 5),
    ("has()", 4),
    ("has( )", 5),
    ("has(a b)", 6),
    ("all(x)", 4),
    ("global( x)", 8),
    ("%", 0),
    ("a == 'b'\n", 8),  # newline is not whitespace to Calico
    ("has(" + "x" * (MAX_LABEL_LENGTH + 1) + ")", 4),
]


@pytest.mark.parametrize(("text", "position"), BAD_TOKENS)
def test_tokenize_errors(text: str, position: int) -> None:
    with pytest.raises(SelectorError) as info:
        tokenize(text)
    assert info.value.position == position


@pytest.mark.parametrize(
    ("label", "valid"),
    [
        ("a", True),
        ("k8s-app", True),
        ("projectcalico.org/namespace", True),
        ("_.-/09AZaz", True),
        ("x" * MAX_LABEL_LENGTH, True),
        ("x" * (MAX_LABEL_LENGTH + 1), False),
        ("", False),
        ("a b", False),
        ("é", False),
        ("a:b", False),
    ],
)
def test_is_valid_label(label: str, valid: bool) -> None:
    assert is_valid_label(label) is valid
