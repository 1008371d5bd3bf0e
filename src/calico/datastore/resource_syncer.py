"""Typed syncer output: raw key/bytes updates decoded into v3 resources.

Role: sits between `Syncer` and a consumer (Felix's calculation graph, the BGP renderer...)
that wants resources, not bytes. Invariant, as in Calico's validation filter: a value that
does not decode (bad JSON, wrong kind, failed validation) is *absent* — reported through
`on_invalid` and, if the consumer held an earlier valid value for that key, delivered as a
deletion, so nothing downstream keeps acting on stale data and nothing crashes on garbage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from calico.datastore.api import Backend, KeyValue, SyncStatus, Update, UpdateKind
from calico.datastore.client import decode_at
from calico.datastore.syncer import Syncer
from calico.model.base import Resource
from calico.model.errors import ResourceError
from calico.model.keys import ResourceKey, kind_prefix, parse_key

_log = logging.getLogger(__name__)


Salvage = Callable[[ResourceKey, bytes], tuple[Resource, str] | None]
"""Given an undecodable value, a resource to use instead (e.g. a fail-closed stand-in) and
what it does, for the one line that reports the key."""


@dataclass(frozen=True, slots=True)
class ResourceUpdate:
    kind: UpdateKind
    key: ResourceKey
    resource: Resource | None  # None for DELETED
    revision: int


class ResourceCallbacks(Protocol):
    def on_status(self, status: SyncStatus) -> None: ...

    def on_resource_updates(self, updates: Sequence[ResourceUpdate]) -> None: ...


def _log_invalid(key: str, reason: str) -> None:
    _log.warning("ignoring invalid datastore value at %s: %s", key, reason)


class ResourceDecoder:
    """A `SyncerCallbacks` that decodes updates and forwards typed ones."""

    def __init__(
        self,
        callbacks: ResourceCallbacks,
        on_invalid: Callable[[str, str], None] = _log_invalid,
        salvage: Salvage | None = None,
    ) -> None:
        self._callbacks = callbacks
        self._on_invalid = on_invalid
        self._salvage = salvage
        self._valid: set[str] = set()  # keys the consumer currently holds a resource for

    def on_status(self, status: SyncStatus) -> None:
        self._callbacks.on_status(status)

    def on_updates(self, updates: Sequence[Update]) -> None:
        typed = [u for u in (self._translate(update) for update in updates) if u is not None]
        if typed:
            self._callbacks.on_resource_updates(typed)

    def _translate(self, update: Update) -> ResourceUpdate | None:
        key = parse_key(update.key)
        if key is None:
            if update.value is not None:
                self._on_invalid(update.key, "not a known resource key")
            return None
        if update.value is None:
            return self._removed(key, update.revision)
        try:
            resource = decode_at(key, KeyValue(update.key, update.value, update.revision))
        except ResourceError as exc:
            salvaged = self._salvage(key, update.value) if self._salvage else None
            if salvaged is None:
                self._on_invalid(update.key, str(exc))
                return self._removed(key, update.revision)
            resource, note = salvaged
            self._on_invalid(update.key, f"{exc}; {note}")
        kind = UpdateKind.UPDATED if key.path in self._valid else UpdateKind.NEW
        self._valid.add(key.path)
        return ResourceUpdate(kind, key, resource, update.revision)

    def _removed(self, key: ResourceKey, revision: int) -> ResourceUpdate | None:
        if key.path not in self._valid:
            return None
        self._valid.discard(key.path)
        return ResourceUpdate(UpdateKind.DELETED, key, None, revision)


def resource_syncer(
    backend: Backend,
    kinds: Iterable[type[Resource]],
    callbacks: ResourceCallbacks,
    *,
    name: str = "resource-syncer",
    on_invalid: Callable[[str, str], None] = _log_invalid,
    salvage: Salvage | None = None,
) -> Syncer:
    """A Syncer over the given kinds' prefixes that delivers decoded resources."""
    prefixes = [kind_prefix(kind) for kind in kinds]
    decoder = ResourceDecoder(callbacks, on_invalid, salvage)
    return Syncer(backend, prefixes, decoder, name=name)
