"""Selector syntax tree: immutable nodes that evaluate, render and compile themselves.

Mirrors libcalico-go ``lib/selector/parser/ast.go``:

* ``!=`` and ``not in`` match when the label is absent; ``==``, ``in``, ``contains``,
  ``starts with`` and ``ends with`` never match an absent label.
* ``global()`` evaluates to true, like ``all()``.  Its "non-namespaced things only" meaning
  is applied by the caller before evaluation: Calico rewrites a rule's namespaceSelector
  ``global()`` to ``!has(projectcalico.org/namespace)`` (and ``all()`` to
  ``has(projectcalico.org/namespace)``) in
  ``libcalico-go/lib/backend/syncersv1/updateprocessors/rules.go``.
* The canonical form (Calico's ``String()``) parenthesises every ``&&`` / ``||`` group,
  including the outermost, puts single spaces around binary operators, writes ``!`` directly
  before its operand, sorts and de-duplicates ``in`` sets, and quotes a value with ``"``
  unless it contains ``"`` (then ``'``).  Parentheses in the input that do not surround an
  ``&&`` / ``||`` group leave no trace.

Nodes are frozen, slotted dataclasses, so structural equality and hashing come for free.
Constructors reject labels and values that no selector text could express, which keeps
every tree printable and re-parseable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar

from calico.selector.tokenizer import is_valid_label

__all__ = [
    "All",
    "And",
    "Contains",
    "EndsWith",
    "Eq",
    "Global",
    "Has",
    "In",
    "LabelValueNode",
    "Matcher",
    "Ne",
    "Node",
    "Not",
    "NotIn",
    "Or",
    "SetNode",
    "StartsWith",
]

Matcher = Callable[[Mapping[str, str]], bool]
"""A compiled selector: labels in, match result out."""


def _check_label(label: str) -> None:
    if not is_valid_label(label):
        raise ValueError(f"not a valid selector label: {label!r}")


def _check_value(value: str) -> None:
    # Literals have no escapes, so one containing both quote characters cannot be written.
    if '"' in value and "'" in value:
        raise ValueError(f"value cannot contain both quote characters: {value!r}")


def _quote(value: str) -> str:
    quote = "'" if '"' in value else '"'
    return f"{quote}{value}{quote}"


class Node(ABC):
    """Base class of all selector syntax-tree nodes."""

    __slots__ = ()

    @abstractmethod
    def evaluate(self, labels: Mapping[str, str]) -> bool:
        """Reference (tree-walking) evaluation; see ``compile`` for the fast path."""

    @abstractmethod
    def compile(self) -> Matcher:
        """Build a closure equivalent to ``evaluate`` with no per-call dispatch."""

    @abstractmethod
    def write(self, out: list[str]) -> None:
        """Append this node's canonical text fragments to ``out``."""

    def children(self) -> tuple[Node, ...]:
        return ()

    @property
    def canonical(self) -> str:
        out: list[str] = []
        self.write(out)
        return "".join(out)

    def walk(self) -> Iterator[Node]:
        """Pre-order traversal of this subtree."""
        yield self
        for child in self.children():
            yield from child.walk()

    def label_names(self) -> frozenset[str]:
        """Every label key this subtree mentions."""
        leaves = (LabelValueNode, SetNode, Has)
        return frozenset(n.label for n in self.walk() if isinstance(n, leaves))


@dataclass(frozen=True, slots=True)
class All(Node):
    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return True

    def compile(self) -> Matcher:
        return _always_true

    def write(self, out: list[str]) -> None:
        out.append("all()")


@dataclass(frozen=True, slots=True)
class Global(Node):
    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return True

    def compile(self) -> Matcher:
        return _always_true

    def write(self, out: list[str]) -> None:
        out.append("global()")


def _always_true(labels: Mapping[str, str]) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Has(Node):
    label: str

    def __post_init__(self) -> None:
        _check_label(self.label)

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return self.label in labels

    def compile(self) -> Matcher:
        key = self.label
        return lambda labels: key in labels

    def write(self, out: list[str]) -> None:
        out.append(f"has({self.label})")


@dataclass(frozen=True, slots=True)
class LabelValueNode(Node):
    """A comparison of one label against one string literal."""

    label: str
    value: str
    OPERATOR: ClassVar[str] = ""
    MATCHES_ABSENT: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_label(self.label)
        _check_value(self.value)

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label)
        return self.test(actual) if actual is not None else self.MATCHES_ABSENT

    def write(self, out: list[str]) -> None:
        out.append(f"{self.label} {self.OPERATOR} {_quote(self.value)}")

    @abstractmethod
    def test(self, actual: str) -> bool:
        """Result for a label that is present with value ``actual``."""


@dataclass(frozen=True, slots=True)
class Eq(LabelValueNode):
    OPERATOR: ClassVar[str] = "=="

    def test(self, actual: str) -> bool:
        return actual == self.value

    def compile(self) -> Matcher:
        key, value = self.label, self.value
        return lambda labels: labels.get(key) == value


@dataclass(frozen=True, slots=True)
class Ne(LabelValueNode):
    OPERATOR: ClassVar[str] = "!="
    MATCHES_ABSENT: ClassVar[bool] = True

    def test(self, actual: str) -> bool:
        return actual != self.value

    def compile(self) -> Matcher:
        key, value = self.label, self.value
        return lambda labels: labels.get(key) != value


@dataclass(frozen=True, slots=True)
class Contains(LabelValueNode):
    OPERATOR: ClassVar[str] = "contains"

    def test(self, actual: str) -> bool:
        return self.value in actual

    def compile(self) -> Matcher:
        key, value = self.label, self.value

        def contains(labels: Mapping[str, str]) -> bool:
            actual = labels.get(key)
            return actual is not None and value in actual

        return contains


@dataclass(frozen=True, slots=True)
class StartsWith(LabelValueNode):
    OPERATOR: ClassVar[str] = "starts with"

    def test(self, actual: str) -> bool:
        return actual.startswith(self.value)

    def compile(self) -> Matcher:
        key, value = self.label, self.value

        def starts_with(labels: Mapping[str, str]) -> bool:
            actual = labels.get(key)
            return actual is not None and actual.startswith(value)

        return starts_with


@dataclass(frozen=True, slots=True)
class EndsWith(LabelValueNode):
    OPERATOR: ClassVar[str] = "ends with"

    def test(self, actual: str) -> bool:
        return actual.endswith(self.value)

    def compile(self) -> Matcher:
        key, value = self.label, self.value

        def ends_with(labels: Mapping[str, str]) -> bool:
            actual = labels.get(key)
            return actual is not None and actual.endswith(value)

        return ends_with


@dataclass(frozen=True, slots=True, init=False)
class SetNode(Node):
    """Set membership; ``values`` is normalised to a sorted, de-duplicated tuple.

    Sorting by code point matches Go's byte-wise ordering of the UTF-8 encodings.
    """

    label: str
    values: tuple[str, ...]
    NEGATED: ClassVar[bool] = False

    def __init__(self, label: str, values: Iterable[str]) -> None:
        _check_label(label)
        normalised = tuple(sorted(set(values)))
        for value in normalised:
            _check_value(value)
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "values", normalised)

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label)
        if actual is None:
            return self.NEGATED
        return (actual in self.values) != self.NEGATED

    def compile(self) -> Matcher:
        key, values = self.label, frozenset(self.values)
        if self.NEGATED:
            return lambda labels: labels.get(key) not in values
        return lambda labels: labels.get(key) in values

    def write(self, out: list[str]) -> None:
        operator = "not in" if self.NEGATED else "in"
        items = ", ".join(_quote(v) for v in self.values)
        out.append(f"{self.label} {operator} {{{items}}}")


@dataclass(frozen=True, slots=True, init=False)
class In(SetNode):
    """``label in {...}``; never matches an absent label."""


@dataclass(frozen=True, slots=True, init=False)
class NotIn(SetNode):
    """``label not in {...}``; matches when the label is absent."""

    NEGATED: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Not(Node):
    operand: Node

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.evaluate(labels)

    def compile(self) -> Matcher:
        inner = self.operand.compile()
        return lambda labels: not inner(labels)

    def write(self, out: list[str]) -> None:
        out.append("!")
        self.operand.write(out)

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class _BoolOp(Node):
    """Shared shape of ``&&`` and ``||``: two or more operands, always parenthesised."""

    operands: tuple[Node, ...]
    JOINER: ClassVar[str] = ""

    def __post_init__(self) -> None:
        # The parser never builds one-operand groups, and "(x)" would re-parse as plain x.
        if len(self.operands) < 2:
            raise ValueError(f"{type(self).__name__} needs at least two operands")

    def write(self, out: list[str]) -> None:
        out.append("(")
        for i, operand in enumerate(self.operands):
            if i:
                out.append(self.JOINER)
            operand.write(out)
        out.append(")")

    def children(self) -> tuple[Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class And(_BoolOp):
    JOINER: ClassVar[str] = " && "

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return all(op.evaluate(labels) for op in self.operands)

    def compile(self) -> Matcher:
        matchers = tuple(op.compile() for op in self.operands)
        if len(matchers) == 2:
            first, second = matchers
            return lambda labels: first(labels) and second(labels)

        def and_(labels: Mapping[str, str]) -> bool:
            # A plain loop: noticeably faster than all() over a generator on this hot path.
            for matcher in matchers:  # noqa: SIM110
                if not matcher(labels):
                    return False
            return True

        return and_


@dataclass(frozen=True, slots=True)
class Or(_BoolOp):
    JOINER: ClassVar[str] = " || "

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return any(op.evaluate(labels) for op in self.operands)

    def compile(self) -> Matcher:
        matchers = tuple(op.compile() for op in self.operands)
        if len(matchers) == 2:
            first, second = matchers
            return lambda labels: first(labels) or second(labels)

        def or_(labels: Mapping[str, str]) -> bool:
            for matcher in matchers:  # noqa: SIM110 (see And.compile)
                if matcher(labels):
                    return True
            return False

        return or_
