"""Strategies shared by the fuzz tests: arbitrary JSON, and valid documents with one mutation.

A near-valid input is where parsers break: a valid document with one value replaced by
something of the wrong type, out of range, huge or odd unicode, one unknown key added, or one
key removed. `mutated(doc)` draws one such document; `json_values()` draws anything JSON can
hold (YAML documents are drawn by dumping these).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import yaml
from hypothesis import settings
from hypothesis import strategies as st

E = TypeVar("E", bound=BaseException)

FULL = os.environ.get("CALICO_FUZZ") == "full"
# The profile conftest.py registered: a decorator for each property.
fuzz = settings.get_profile("fuzz-full" if FULL else "fuzz-default")


def fuzz_examples(full: int, default: int) -> settings:
    """The profile with fewer examples, for properties whose every case is slow (etcd writes)."""
    return settings(fuzz, max_examples=full if FULL else default)


HUGE = "x" * 100_000
_ODD_TEXT = [
    "",
    " ",
    "\x00",
    "\n",
    "é",
    "\u202e",
    "\ud7ff",
    "😀",
    "-1",
    "0",
    "none",
    "null",
    "true",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 0, 2**31, 2**63, 10**30, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from([*_ODD_TEXT, HUGE]),
)


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def deep_text(openers: list[str]) -> st.SearchStrategy[str]:
    """Deep nesting: parsers that recurse per level must refuse it, not overflow the stack.
    (Callers pick openers that parse fast: PyYAML takes seconds on ~1,500 unclosed '['.)"""
    return st.tuples(st.integers(1, 3000), st.sampled_from(openers)).map(lambda t: t[1] * t[0])


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside doc (mappings by key, lists by index)."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += _paths(value, (*prefix, index))
    return out


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> Any:
    """doc with exactly one change at a drawn path."""
    doc = copy.deepcopy(doc)
    path = draw(st.sampled_from(_paths(doc)[1:] or [()]))
    if not path:
        return draw(json_values())
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    action = draw(st.sampled_from(["replace", "replace", "unknown", "drop"]))
    if action == "replace":
        parent[last] = draw(json_values(max_leaves=5))
    elif action == "unknown" and isinstance(parent[last], dict):
        parent[last][draw(st.text(min_size=1, max_size=12))] = draw(json_values(max_leaves=3))
    elif isinstance(parent, dict):
        del parent[last]
    else:
        parent.pop(last)
    return doc


def as_text(doc: Any, style: str) -> str:
    """doc as a JSON or YAML document."""
    if style == "json":
        return json.dumps(doc)
    return yaml.safe_dump(doc, allow_unicode=True)


def clean(call: Callable[[], Any], error: type[E] | tuple[type[E], ...]) -> E | None:
    """Run call: it may succeed (None) or raise `error` with a message, never anything else."""
    try:
        call()
    except error as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        assert "Traceback" not in str(exc)
        return exc
    return None
