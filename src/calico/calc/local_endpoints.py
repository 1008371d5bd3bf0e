"""Passes on only the endpoints this host programs (Calico's local endpoint dispatcher).

An endpoint is local when its `node` is this host; a workload endpoint also needs its
host-side interface name to be programmed. An endpoint that stops being local (deleted,
moved, or its interface name cleared) is removed downstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from calico.calc.items import ItemKey
from calico.model.endpoints import HostEndpoint, WorkloadEndpoint


class EndpointListener(Protocol):
    def on_endpoint_update(
        self, key: ItemKey, endpoint: WorkloadEndpoint | HostEndpoint
    ) -> None: ...

    def on_endpoint_remove(self, key: ItemKey) -> None: ...


class LocalEndpointFilter:
    def __init__(self, hostname: str, listeners: Sequence[EndpointListener]) -> None:
        self._hostname = hostname
        self._listeners = listeners
        self._local: set[ItemKey] = set()

    def on_endpoint_update(
        self, key: ItemKey, endpoint: WorkloadEndpoint | HostEndpoint | None
    ) -> None:
        if endpoint is None or endpoint.spec.node != self._hostname or not _programmable(endpoint):
            if key in self._local:
                self._local.discard(key)
                for listener in self._listeners:
                    listener.on_endpoint_remove(key)
            return
        self._local.add(key)
        for listener in self._listeners:
            listener.on_endpoint_update(key, endpoint)


def _programmable(endpoint: WorkloadEndpoint | HostEndpoint) -> bool:
    return not isinstance(endpoint, WorkloadEndpoint) or bool(endpoint.spec.interfaceName)
