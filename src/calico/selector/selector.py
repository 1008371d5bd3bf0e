"""The public ``Selector`` value type and the cached ``parse`` entry point."""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Mapping
from typing import Any, final

from calico.selector.ast import Matcher, Node
from calico.selector.parser import parse_node
from calico.selector.restrictions import LabelRestriction, label_restrictions

__all__ = ["ALL", "Selector", "make_unique_id", "normalise", "parse", "validate"]


def make_unique_id(prefix: str, content: str) -> str:
    """Calico's ``hash.MakeUniqueID``: ``prefix:`` + unpadded base64url(SHA-224(prefix:content)).

    Calico derives IP-set names from these IDs, so the scheme must match exactly.
    """
    digest = hashlib.sha224(f"{prefix}:{content}".encode()).digest()
    return f"{prefix}:{base64.urlsafe_b64encode(digest).rstrip(b'=').decode('ascii')}"


@final
class Selector:
    """A parsed selector: immutable, hashable, and equal iff canonical forms are equal.

    The canonical form is injective on syntax trees, so equal selectors have equal trees.
    Evaluation uses a closure compiled once from the tree, which is several times faster than
    walking the tree on every call.
    """

    __slots__ = ("_canonical", "_matcher", "_restrictions", "_root", "_uid")

    _root: Node
    _canonical: str
    _matcher: Any  # Matcher; Any avoids mypy treating the slot as a bound method
    _uid: str | None
    _restrictions: Mapping[str, LabelRestriction] | None

    def __init__(self, root: Node) -> None:
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "_canonical", root.canonical)
        object.__setattr__(self, "_matcher", root.compile())
        object.__setattr__(self, "_uid", None)
        object.__setattr__(self, "_restrictions", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[type[Selector], tuple[Node]]:
        return (Selector, (self._root,))

    @property
    def root(self) -> Node:
        return self._root

    @property
    def canonical(self) -> str:
        """Calico's ``String()`` form, e.g. ``(app == "web" && has(tier))``."""
        return self._canonical

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        result: bool = self._matcher(labels)
        return result

    @property
    def matcher(self) -> Matcher:
        """The compiled evaluation closure, for hot loops that want to skip a call layer."""
        matcher: Matcher = self._matcher
        return matcher

    def unique_id(self) -> str:
        """Calico's ``UniqueID()``: ``s:`` + base64url(SHA-224) of the canonical form."""
        if self._uid is None:
            object.__setattr__(self, "_uid", make_unique_id("s", self._canonical))
        assert self._uid is not None
        return self._uid

    @property
    def label_restrictions(self) -> Mapping[str, LabelRestriction]:
        """Necessary conditions per label key (see ``calico.selector.restrictions``)."""
        if self._restrictions is None:
            object.__setattr__(self, "_restrictions", label_restrictions(self._root))
        assert self._restrictions is not None
        return self._restrictions

    @property
    def label_names(self) -> frozenset[str]:
        """Every label key the selector mentions (changes to others cannot affect it)."""
        return self._root.label_names()

    def __str__(self) -> str:
        return self._canonical

    def __repr__(self) -> str:
        return f"Selector({self._canonical!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Selector):
            return NotImplemented
        return self._canonical == other._canonical

    def __hash__(self) -> int:
        return hash(self._canonical)


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Selector:
    """Parse selector ``text``; raises ``SelectorError`` (a ``ValueError``) if malformed.

    Results are cached: policies repeat the same few selectors many times, and a
    ``Selector`` is immutable so sharing instances is safe.
    """
    return Selector(parse_node(text))


def validate(text: str) -> None:
    """Raise ``SelectorError`` if ``text`` is not a valid selector."""
    parse(text)


def normalise(text: str) -> str:
    """Calico's ``selector.Normalise``: canonical form, or the stripped input if invalid."""
    text = text.strip()
    try:
        return parse(text).canonical
    except ValueError:
        return text


ALL = parse("all()")
