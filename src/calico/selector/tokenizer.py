"""Tokenizer for Calico's selector language.

Mirrors libcalico-go ``lib/selector/tokenizer/tokenizer.go``:

* Whitespace is only space and tab.  Anything else (including newlines) is an error, exactly
  as in Calico, so a selector that Calico rejects is rejected here too.
* Label keys are runs of ``[A-Za-z0-9_./-]``, at most 512 characters.
* String literals are delimited by ``"`` or ``'`` and have no escapes, so a literal cannot
  contain its own delimiter.
* ``contains``, ``starts with``, ``ends with``, ``in`` and ``not in`` are operators only
  directly after a label (elsewhere they are ordinary label names).  They must be followed by
  a word boundary, and the two-word forms may be written without the space
  (``startswith``, ``notin``).
* ``has(``, ``all(`` and ``global(`` must be written without a space before the ``(``;
  ``has (x)`` is the label ``has`` followed by a stray parenthesis.

Unlike Calico, each token records its start offset so errors can point at the problem.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

from calico.selector.errors import SelectorError

__all__ = ["MAX_LABEL_LENGTH", "Kind", "Token", "is_valid_label", "tokenize"]

MAX_LABEL_LENGTH = 512

_WHITESPACE = " \t"
_IDENT_RE = re.compile(r"[A-Za-z0-9_./-]+")


class Kind(enum.Enum):
    """Token kinds; the value is how the token is described in error messages."""

    LABEL = "label"
    STRING = "string literal"
    LBRACE = "'{'"
    RBRACE = "'}'"
    COMMA = "','"
    EQ = "'=='"
    NE = "'!='"
    IN = "'in'"
    NOT_IN = "'not in'"
    CONTAINS = "'contains'"
    STARTS_WITH = "'starts with'"
    ENDS_WITH = "'ends with'"
    NOT = "'!'"
    ALL = "'all()'"
    GLOBAL = "'global()'"
    HAS = "'has()'"
    LPAREN = "'('"
    RPAREN = "')'"
    AND = "'&&'"
    OR = "'||'"
    EOF = "end of selector"


class Token(NamedTuple):
    kind: Kind
    value: str  # label name, literal text or has() label; "" otherwise
    pos: int  # 0-based offset of the token's first character


_SIMPLE = {
    "(": Kind.LPAREN,
    ")": Kind.RPAREN,
    "{": Kind.LBRACE,
    "}": Kind.RBRACE,
    ",": Kind.COMMA,
}
_DOUBLED = {"==": Kind.EQ, "!=": Kind.NE, "&&": Kind.AND, "||": Kind.OR}
# Operators recognised after a label, in Calico's matching order ("not in" before "in").
_LABEL_OPERATORS: tuple[tuple[tuple[str, ...], Kind], ...] = (
    (("contains",), Kind.CONTAINS),
    (("starts", "with"), Kind.STARTS_WITH),
    (("ends", "with"), Kind.ENDS_WITH),
    (("not", "in"), Kind.NOT_IN),
    (("in",), Kind.IN),
)


def is_valid_label(name: str) -> bool:
    """True if ``name`` is usable as a label key in a selector."""
    return len(name) <= MAX_LABEL_LENGTH and _IDENT_RE.fullmatch(name) is not None


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, always ending with an EOF token."""
    tokens: list[Token] = []
    pos = _skip_ws(text, 0)
    while pos < len(text):
        label = tokens[-1].value if tokens and tokens[-1].kind is Kind.LABEL else None
        tok, pos = _next_token(text, pos, label)
        tokens.append(tok)
        pos = _skip_ws(text, pos)
    tokens.append(Token(Kind.EOF, "", len(text)))
    return tokens


def _next_token(text: str, pos: int, prev_label: str | None) -> tuple[Token, int]:
    char = text[pos]
    if char in _SIMPLE:
        return Token(_SIMPLE[char], "", pos), pos + 1
    if char in "\"'":
        end = text.find(char, pos + 1)
        if end < 0:
            raise SelectorError(text, "unterminated string literal", pos)
        return Token(Kind.STRING, text[pos + 1 : end], pos), end + 1
    pair = text[pos : pos + 2]
    if pair in _DOUBLED:
        return Token(_DOUBLED[pair], "", pos), pos + 2
    if char == "!":
        return Token(Kind.NOT, "", pos), pos + 1
    if char in "=&|":
        raise SelectorError(text, f"expected '{char}{char}'", pos)
    if prev_label is not None:
        return _label_operator(text, pos, prev_label)
    return _function_or_label(text, pos)


def _label_operator(text: str, pos: int, label: str) -> tuple[Token, int]:
    for words, kind in _LABEL_OPERATORS:
        end = _match_words(text, pos, words)
        if end >= 0:
            return Token(kind, "", pos), end
    raise SelectorError(text, f"expected an operator after label '{label}'", pos)


def _match_words(text: str, pos: int, words: tuple[str, ...]) -> int:
    """End offset if ``words`` (optionally space-separated) start at ``pos``, else -1."""
    end = pos
    for i, word in enumerate(words):
        if i:
            end = _skip_ws(text, end)
        if not text.startswith(word, end):
            return -1
        end += len(word)
    # Only the final word needs a boundary: Calico accepts "notin" and "startswith".
    if end < len(text) and _IDENT_RE.match(text, end):
        return -1
    return end


def _function_or_label(text: str, pos: int) -> tuple[Token, int]:
    if text.startswith("has(", pos):
        start = _skip_ws(text, pos + 4)
        if not _IDENT_RE.match(text, start):
            raise SelectorError(text, "expected a label inside 'has()'", start)
        label, end = _cut_label(text, start)
        return Token(Kind.HAS, label, pos), _expect_close(text, end, "has(")
    for name, kind in (("all(", Kind.ALL), ("global(", Kind.GLOBAL)):
        if text.startswith(name, pos):
            return Token(kind, "", pos), _expect_close(text, pos + len(name), name)
    label, end = _cut_label(text, pos)
    return Token(Kind.LABEL, label, pos), end


def _cut_label(text: str, pos: int) -> tuple[str, int]:
    match = _IDENT_RE.match(text, pos)
    if match is None:
        raise SelectorError(text, f"unexpected character {text[pos]!r}", pos)
    if len(match.group()) > MAX_LABEL_LENGTH:
        raise SelectorError(text, f"label longer than {MAX_LABEL_LENGTH} characters", pos)
    return match.group(), match.end()


def _expect_close(text: str, pos: int, opener: str) -> int:
    pos = _skip_ws(text, pos)
    if not text.startswith(")", pos):
        raise SelectorError(text, f"expected ')' to close '{opener}'", pos)
    return pos + 1


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos
