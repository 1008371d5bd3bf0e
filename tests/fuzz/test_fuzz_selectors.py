"""Selectors: any text parses or raises SelectorError with a position inside the text."""

from __future__ import annotations

from _fuzz import clean, deep_text, fuzz
from hypothesis import given
from hypothesis import strategies as st

from calico.selector import SelectorError
from calico.selector.selector import parse

VALID = [
    'app == "web" && has(tier)',
    "a in {'x', 'y'} || !(b not in {\"z\"})",
    "all() && global()",
    "k8s.io/name contains 'x' && b starts with 'y' && c ends with 'z'",
    "!has(a) && a != 'b'",
]
_PIECES = st.sampled_from(
    [
        "(",
        ")",
        "{",
        "}",
        "'",
        '"',
        "&&",
        "||",
        "!",
        "==",
        "!=",
        " in ",
        " not in ",
        ",",
        "has(",
        "all()",
        "global()",
        " contains ",
        " starts with ",
        "a",
        "\\",
        "\x00",
        "é",
        "\u202e",
        " ",
    ]
)


@st.composite
def near_valid(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(VALID))
    at = draw(st.integers(0, len(text)))
    cut = draw(st.integers(0, 3))
    return text[:at] + draw(st.one_of(_PIECES, st.text(max_size=3))) + text[at + cut :]


def _check(text: str) -> None:
    exc = clean(lambda: parse(text), SelectorError)
    if exc is not None:
        assert 0 <= exc.position <= len(text), exc


@fuzz
@given(near_valid())
def test_near_valid_selectors(text: str) -> None:
    _check(text)


@fuzz
@given(
    st.one_of(
        st.text(),
        deep_text(["(", "!", "!(", "a in {"]),
        st.lists(_PIECES, max_size=12).map("".join),
    )
)
def test_arbitrary_text(text: str) -> None:
    _check(text)
