"""Items' effective labels: their own over those their profiles apply (Calico's InheritIndex).

Role: remember every item (endpoint or network set) and every profile's `labelsToApply`,
and tell the listeners an item's effective labels whenever the item or one of its profiles
changes. The listeners are the IP set calculator (all items) and the active rules
calculator (which indexes only local endpoints).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from calico.calc.items import Item, ItemKey, effective_labels


class ItemListener(Protocol):
    def on_item_update(self, key: ItemKey, item: Item, labels: dict[str, str]) -> None: ...

    def on_item_remove(self, key: ItemKey) -> None: ...


class LabelInheritanceIndex:
    def __init__(self, listeners: Sequence[ItemListener]) -> None:
        self._listeners = listeners
        self._items: dict[ItemKey, Item] = {}
        self._children: dict[str, set[ItemKey]] = {}
        self._parent_labels: dict[str, dict[str, str]] = {}

    def on_item_update(self, key: ItemKey, item: Item | None) -> None:
        old = self._items.pop(key, None)
        for parent in old.parents if old else ():
            self._children.get(parent, set()).discard(key)
        if item is None:
            for listener in self._listeners:
                listener.on_item_remove(key)
            return
        self._items[key] = item
        for parent in item.parents:
            self._children.setdefault(parent, set()).add(key)
        labels = effective_labels(item, self._parent_labels)
        for listener in self._listeners:
            listener.on_item_update(key, item, labels)

    def on_parent_labels(self, name: str, labels: dict[str, str]) -> None:
        """A profile's labelsToApply ({} when the profile is gone)."""
        if self._parent_labels.get(name, {}) == labels:
            return
        self._parent_labels[name] = labels
        for key in list(self._children.get(name, ())):
            item = self._items[key]
            merged = effective_labels(item, self._parent_labels)
            for listener in self._listeners:
                listener.on_item_update(key, item, merged)
