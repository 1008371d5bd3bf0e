"""Recursive-descent parser for Calico selectors.

Grammar (after tokenizing; mirrors libcalico-go ``lib/selector/parser/parser.go``)::

    selector   := EOF | or_expr EOF          -- empty / blank text means all()
    or_expr    := and_expr ( "||" and_expr )*
    and_expr   := operation ( "&&" operation )*
    operation  := "!"* primary               -- the "!"s collapse to one negation or none
    primary    := "has(" LABEL ")" | "all()" | "global()" | "(" or_expr ")" | comparison
    comparison := LABEL ( "==" | "!=" | "contains" | "starts with" | "ends with" ) STRING
                | LABEL ( "in" | "not in" ) "{" ( STRING "," )* STRING? "}"

So ``!`` binds tighter than ``&&``, which binds tighter than ``||``.  As in Calico, a set
literal may be empty or end with a trailing comma, and a run of ``!`` is collapsed by parity
(``!!has(a)`` is just ``has(a)``) while ``!(!has(a))`` keeps both negations.

Unlike Calico, nesting depth is capped (``MAX_DEPTH``) so hostile input cannot exhaust the
Python stack during parsing, rendering or evaluation.
"""

from __future__ import annotations

from typing import NoReturn

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
from calico.selector.errors import SelectorError
from calico.selector.tokenizer import Kind, Token, tokenize

__all__ = ["MAX_DEPTH", "parse_node"]

MAX_DEPTH = 100

_COMPARISONS: dict[Kind, type[LabelValueNode]] = {
    Kind.EQ: Eq,
    Kind.NE: Ne,
    Kind.CONTAINS: Contains,
    Kind.STARTS_WITH: StartsWith,
    Kind.ENDS_WITH: EndsWith,
}
_SET_OPERATORS = (Kind.IN, Kind.NOT_IN)


def parse_node(text: str) -> Node:
    """Parse ``text`` into a syntax tree, raising ``SelectorError`` if it is malformed."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self._text = text
        self._tokens = tokenize(text)
        self._i = 0
        self._depth = 0

    def parse(self) -> Node:
        if self._peek().kind is Kind.EOF:
            return All()
        node = self._or_expr()
        tok = self._peek()
        if tok.kind is not Kind.EOF:
            self._fail(f"unexpected {_describe(tok)}, expected '&&', '||' or end", tok)
        return node

    def _peek(self) -> Token:
        return self._tokens[self._i]

    def _take(self) -> Token:
        tok = self._tokens[self._i]
        if tok.kind is not Kind.EOF:
            self._i += 1
        return tok

    def _fail(self, reason: str, tok: Token) -> NoReturn:
        raise SelectorError(self._text, reason, tok.pos)

    def _or_expr(self) -> Node:
        operands = [self._and_expr()]
        while self._peek().kind is Kind.OR:
            self._take()
            operands.append(self._and_expr())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and_expr(self) -> Node:
        operands = [self._operation()]
        while self._peek().kind is Kind.AND:
            self._take()
            operands.append(self._operation())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _operation(self) -> Node:
        negated = False
        while self._peek().kind is Kind.NOT:
            self._take()
            negated = not negated
        node = self._primary()
        return Not(node) if negated else node

    def _primary(self) -> Node:
        tok = self._take()
        match tok.kind:
            case Kind.HAS:
                return Has(tok.value)
            case Kind.ALL:
                return All()
            case Kind.GLOBAL:
                return Global()
            case Kind.LPAREN:
                return self._parenthesised(tok)
            case Kind.LABEL:
                return self._comparison(tok)
        expected = "a label, 'has(', 'all()', 'global()', '!' or '('"
        if tok.kind is Kind.EOF:
            self._fail(f"expected {expected}", tok)
        self._fail(f"unexpected {_describe(tok)}, expected {expected}", tok)

    def _parenthesised(self, lparen: Token) -> Node:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            self._fail(f"parentheses nested more than {MAX_DEPTH} deep", lparen)
        node = self._or_expr()
        tok = self._take()
        if tok.kind is not Kind.RPAREN:
            self._fail("expected ')'", tok)
        self._depth -= 1
        return node

    def _comparison(self, label: Token) -> Node:
        op = self._take()
        if op.kind in _SET_OPERATORS:
            values = self._set_literal()
            return In(label.value, values) if op.kind is Kind.IN else NotIn(label.value, values)
        node_type = _COMPARISONS.get(op.kind)
        if node_type is None:
            self._fail(f"expected an operator after label '{label.value}'", op)
        literal = self._take()
        if literal.kind is not Kind.STRING:
            self._fail("expected a string literal", literal)
        return node_type(label.value, literal.value)

    def _set_literal(self) -> list[str]:
        tok = self._take()
        if tok.kind is not Kind.LBRACE:
            self._fail("expected '{' to start a set literal", tok)
        values: list[str] = []
        after_value = False
        while self._peek().kind is Kind.STRING:
            values.append(self._take().value)
            after_value = self._peek().kind is not Kind.COMMA
            if after_value:
                break
            self._take()
        tok = self._take()
        if tok.kind is not Kind.RBRACE:
            self._fail("expected ',' or '}'" if after_value else "expected a string or '}'", tok)
        return values


def _describe(tok: Token) -> str:
    if tok.kind is Kind.LABEL:
        return f"label '{tok.value}'"
    if tok.kind is Kind.STRING:
        return f"string literal {tok.value!r}"
    return str(tok.kind.value)
