"""Property tests: printing and re-parsing random trees, and evaluation consistency."""

from __future__ import annotations

from _selector_strategies import label_maps, trees
from hypothesis import given, settings
from hypothesis import strategies as st

from calico.selector import Selector, parse
from calico.selector.ast import Node
from calico.selector.restrictions import label_restrictions
from calico.selector.tokenizer import Kind, Token, tokenize

SETTINGS = settings(max_examples=300, deadline=None)


@SETTINGS
@given(trees())
def test_canonical_round_trip(tree: Node) -> None:
    text = tree.canonical
    reparsed = parse(text)
    assert reparsed.root == tree
    assert reparsed.canonical == text
    assert Selector(tree) == reparsed
    assert Selector(tree).unique_id() == reparsed.unique_id()


@SETTINGS
@given(trees(), st.lists(label_maps(), min_size=1, max_size=8))
def test_evaluation_agrees(tree: Node, samples: list[dict[str, str]]) -> None:
    compiled = Selector(tree)
    reparsed = parse(tree.canonical)
    for labels in samples:
        expected = tree.evaluate(labels)
        assert compiled.evaluate(labels) is expected
        assert reparsed.evaluate(labels) is expected
        assert reparsed.root.evaluate(labels) is expected


@SETTINGS
@given(trees(), st.lists(label_maps(), min_size=1, max_size=8))
def test_restrictions_are_necessary(tree: Node, samples: list[dict[str, str]]) -> None:
    restrictions = label_restrictions(tree)
    for labels in samples:
        if tree.evaluate(labels):
            for key, r in restrictions.items():
                assert r.allows(labels.get(key)), (key, r, labels)


_TOKEN_TEXT = {
    Kind.EQ: "==",
    Kind.NE: "!=",
    Kind.IN: "in",
    Kind.NOT_IN: "not  in",
    Kind.CONTAINS: "contains",
    Kind.STARTS_WITH: "starts\twith",
    Kind.ENDS_WITH: "ends with",
    Kind.NOT: "!",
    Kind.ALL: "all( )",
    Kind.GLOBAL: "global(\t)",
    Kind.LPAREN: "(",
    Kind.RPAREN: ")",
    Kind.LBRACE: "{",
    Kind.RBRACE: "}",
    Kind.COMMA: ",",
    Kind.AND: "&&",
    Kind.OR: "||",
}


def _render(tok: Token) -> str:
    if tok.kind is Kind.LABEL:
        return tok.value
    if tok.kind is Kind.STRING:
        return f"'{tok.value}'" if '"' in tok.value else f'"{tok.value}"'
    if tok.kind is Kind.HAS:
        return f"has( {tok.value} )"
    return _TOKEN_TEXT[tok.kind]


@SETTINGS
@given(trees(), st.data())
def test_whitespace_between_tokens_is_ignored(tree: Node, data: st.DataObject) -> None:
    tokens = tokenize(tree.canonical)[:-1]
    gaps = data.draw(
        st.lists(
            st.sampled_from([" ", "\t", " \t  "]),
            min_size=len(tokens) + 1,
            max_size=len(tokens) + 1,
        )
    )
    text = gaps[0] + "".join(_render(t) + gap for t, gap in zip(tokens, gaps[1:], strict=True))
    assert parse(text).root == tree
