"""Garbage written straight into etcd under every resource prefix, as a broken tool would.

Four flavours per kind: bytes that are not JSON, a valid document of another kind, a field
calico-py does not know, and a value of 1.4 MB (1.34 MiB: etcd's default request limit,
1.5 MiB, refuses a larger one before any reader sees it). `LineCounter` tells how many log
lines named each key: the goal is exactly one per key and change, however often readers resync.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from calico.datastore.api import Backend
from calico.model.base import Resource
from calico.model.keys import ResourceKey
from calico.model.policy import GlobalNetworkSet, Profile
from calico.model.registry import KINDS

FLAVOURS = ("bad-json", "wrong-kind", "bad-field", "huge")
HUGE_BYTES = 1_400_000
NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class Garbage:
    kind: type[Resource]
    flavour: str
    key: str
    value: bytes

    @property
    def needles(self) -> tuple[str, ...]:
        """How a log line names this key: its path, or the resource a validation error cites."""
        name = self.key.rsplit("/", 2 if self.kind.NAMESPACED else 1)[1:]
        return self.key, f'{self.kind.KIND} "{"/".join(name)}":'


def _doc(kind: str, name: str, namespaced: bool, spec: dict[str, object]) -> bytes:
    meta: dict[str, object] = {"name": name}
    if namespaced:
        meta["namespace"] = NAMESPACE
    data = {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}
    return json.dumps(data).encode()


def _value(kind: type[Resource], name: str, flavour: str) -> bytes:
    if flavour == "bad-json":
        return b'{"kind": "' + kind.KIND.encode() + b'", "spec": {'
    if flavour == "wrong-kind":
        other = Profile if kind is not Profile else GlobalNetworkSet
        return _doc(other.KIND, name, other.NAMESPACED, {})
    if flavour == "bad-field":
        return _doc(kind.KIND, name, kind.NAMESPACED, {"selector": "all()", "noSuchField": 1})
    return _doc(kind.KIND, name, kind.NAMESPACED, {"junk": "x" * HUGE_BYTES})


def garbage(kinds: Iterable[type[Resource]] = KINDS.values()) -> list[Garbage]:
    """One bad value per kind and flavour, each under its own key."""
    out = []
    for kind in kinds:
        for flavour in FLAVOURS:
            name = f"garbage-{flavour}"
            key = ResourceKey(kind, name, NAMESPACE if kind.NAMESPACED else None).path
            out.append(Garbage(kind, flavour, key, _value(kind, name, flavour)))
    return out


def write(backend: Backend, items: Iterable[Garbage]) -> None:
    for item in items:
        backend.put(item.key, item.value)


class LineCounter(logging.Handler):
    """Counts the log lines that name each garbage key (and the longest such line)."""

    def __init__(self, items: Iterable[Garbage]) -> None:
        super().__init__(logging.DEBUG)
        self._needles = [(g.key, g.needles) for g in items]
        self.lines = {key: 0 for key, _ in self._needles}
        self.longest = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count(record.getMessage())

    def count(self, line: str) -> None:
        for key, needles in self._needles:
            if any(n in line for n in needles):
                self.lines[key] += 1
                self.longest = max(self.longest, len(line))

    def reading(self, component: str, error: str = "") -> Reading:
        counts = [n for n in self.lines.values() if n]
        return Reading(
            component, not error, max(counts, default=0), len(counts), self.longest, error
        )


@dataclass(frozen=True, slots=True)
class Reading:
    """What one reader did with the garbage: survived, and how many lines named each key."""

    component: str
    alive: bool
    max_lines_per_key: int
    keys_reported: int
    longest_line: int
    error: str = ""


def read_with(component: str, items: Iterable[Garbage], run: Callable[[], None]) -> Reading:
    """Run one reader over the datastore, counting its log lines per key."""
    counter = LineCounter(items)
    root = logging.getLogger()
    root.addHandler(counter)
    level = root.level
    root.setLevel(min(level, logging.WARNING) or logging.WARNING)
    try:
        run()
        error = ""
    except Exception as exc:  # the figure is whether the reader survives
        error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        root.removeHandler(counter)
        root.setLevel(level)
    return counter.reading(component, error)
