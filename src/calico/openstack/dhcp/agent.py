"""The DHCP agent's loop: etcd -> what dnsmasq must do -> `DnsmasqManager.apply`.

Two syncers (list at a revision, watch from the next; re-list on compaction or outage and hand
over only the difference) follow this host's OpenStack WorkloadEndpoints (names
`<host>-openstack-…` in the region's namespace, and spec.node == this host) and the region's
subnet data. Their callbacks only update the in-memory view and flag a change; the agent's
own thread waits until changes stop arriving for a moment (debounce, so a resync or a burst
of ports costs one restart, not one per port), renders the whole desired state and applies it.

Nothing is applied before both syncers have delivered their first snapshot (a partial view
would stop dnsmasq for networks whose data has not arrived yet). While etcd is unreachable
the last view stays in force and dnsmasq keeps serving. Apply runs again every
`check_interval` seconds, restarting any dnsmasq that died, and sooner after a failure.
An undecodable endpoint or subnet counts as absent, as everywhere in calico-py.

The taps' MTUs (`links.TapMtus` in production) are a third input: a tap appearing or changing
its MTU is a change like any other, so its VM's DHCP options carry the new MTU.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from calico.datastore.api import Backend, SyncStatus, Update
from calico.datastore.resource_syncer import ResourceDecoder, ResourceUpdate
from calico.datastore.syncer import Syncer
from calico.model.endpoints import WorkloadEndpoint
from calico.model.keys import kind_prefix
from calico.model.status_keys import region_string
from calico.openstack import keys
from calico.openstack.dhcp.config import (
    NetworkConfig,
    Port,
    RenderOptions,
    Subnet,
    parse_subnet,
    port_from_endpoint,
    render,
)

log = logging.getLogger(__name__)


class MtuWatcher(Protocol):
    """The MTU of each tap present, by name; calls back (from any thread) when they change."""

    def get(self) -> dict[str, int]: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Manager(Protocol):
    def adopt(self) -> None: ...

    def apply(self, desired: Mapping[str, NetworkConfig]) -> bool: ...

    def stop_all(self) -> None: ...


def endpoint_prefix(namespace: str, hostname: str) -> str:
    """Where this host's OpenStack endpoints live ('-' is doubled inside name parts)."""
    host = hostname.replace("-", "--")
    return f"{kind_prefix(WorkloadEndpoint, namespace)}{host}-{keys.ORCHESTRATOR}-"


class DhcpAgent:
    def __init__(
        self,
        backend: Backend,
        hostname: str,
        region: str | None,
        manager: Manager,
        options: RenderOptions,
        *,
        debounce: float = 0.2,
        max_debounce: float = 2.0,
        check_interval: float = 10.0,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        tap_mtus: Callable[[Callable[[], None]], MtuWatcher] | None = None,
    ) -> None:
        """`tap_mtus(on_change)` makes the MTU watcher; without one no MTU is served."""
        self.hostname = hostname
        self.manager = manager
        self.options = options
        self._debounce = debounce
        self._max_debounce = max_debounce
        self._check_interval = check_interval
        self._retry_interval = retry_interval
        self._clock = clock
        self._subnet_prefix = keys.subnet_prefix(region_string(region))
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self.stop_event = threading.Event()
        self._ports: dict[str, Port] = {}  # endpoint key path -> port
        self._subnets: dict[str, Subnet] = {}
        self._synced = {"endpoints": False, "subnets": False}
        self._problems: set[str] = set()
        self._mtus = tap_mtus(self._changed.set) if tap_mtus is not None else None
        self.applied: Mapping[str, NetworkConfig] = {}
        self._syncers = (
            Syncer(
                backend,
                [endpoint_prefix(keys.endpoint_namespace(region), hostname)],
                ResourceDecoder(_EndpointCallbacks(self)),
                name="dhcp-endpoints",
            ),
            Syncer(backend, [self._subnet_prefix], _SubnetCallbacks(self), name="dhcp-subnets"),
        )

    # -- called from the syncers' threads ---------------------------------------------------

    def _on_status(self, which: str, status: SyncStatus) -> None:
        if status is SyncStatus.IN_SYNC:
            with self._lock:
                first = not self._synced[which]
                self._synced[which] = True
            if first:
                self._changed.set()

    def _on_endpoints(self, updates: Sequence[ResourceUpdate]) -> None:
        changed = False
        with self._lock:
            for update in updates:
                path = update.key.path
                port = None
                wep = update.resource
                if (
                    isinstance(wep, WorkloadEndpoint)
                    and wep.spec.node == self.hostname
                    and wep.spec.orchestrator == keys.ORCHESTRATOR
                ):
                    port = port_from_endpoint(wep)
                if port is None:
                    changed = self._ports.pop(path, None) is not None or changed
                elif self._ports.get(path) != port:
                    self._ports[path] = port
                    changed = True
        if changed:
            self._changed.set()

    def _on_subnets(self, updates: Sequence[Update]) -> None:
        changed = False
        with self._lock:
            for update in updates:
                subnet_id = update.key[len(self._subnet_prefix) :]
                subnet = None
                if update.value is not None and "/" not in subnet_id:
                    try:
                        subnet = parse_subnet(subnet_id, update.value)
                    except ValueError as exc:
                        log.warning("ignoring invalid subnet data at %s: %s", update.key, exc)
                if subnet is None:
                    changed = self._subnets.pop(subnet_id, None) is not None or changed
                elif self._subnets.get(subnet_id) != subnet:
                    self._subnets[subnet_id] = subnet
                    changed = True
        if changed:
            self._changed.set()

    # -- the agent's thread -----------------------------------------------------------------

    def stop(self) -> None:
        """Ask run() to return (callable from a signal handler)."""
        self.stop_event.set()
        self._changed.set()

    def run(self) -> int:
        """Serve until stop(); 0 after a clean stop (dnsmasq stopped, interfaces removed),
        1 if a syncer died (dnsmasq is left serving for the restarted agent to adopt)."""
        self.manager.adopt()
        if self._mtus is not None:
            self._mtus.start()
        for syncer in self._syncers:
            syncer.start()
        code = 1
        try:
            code = self._loop()
        finally:
            for syncer in self._syncers:
                syncer.stop()
            if self._mtus is not None:
                self._mtus.stop()
            if code == 0:
                self.manager.stop_all()
        return code

    def _loop(self) -> int:
        wait = self._check_interval
        while True:
            if self._changed.wait(wait):
                self._settle()
            if self.stop_event.is_set():
                return 0
            for syncer in self._syncers:
                if not syncer.is_alive():
                    log.error("datastore watch stopped: %s", syncer.failure)
                    return 1
            wait = self._check_interval
            if not self.reconcile():
                wait = self._retry_interval

    def _settle(self) -> None:
        """Wait until no change has arrived for `debounce` seconds (at most `max_debounce`)."""
        deadline = self._clock() + self._max_debounce
        while True:
            self._changed.clear()
            if self.stop_event.wait(self._debounce) or not self._changed.is_set():
                return
            if self._clock() >= deadline:
                return

    def reconcile(self) -> bool:
        """Render the current view and apply it; False if it should be retried soon."""
        with self._lock:
            if not all(self._synced.values()):
                return True  # the first snapshots are not in yet
            ports = list(self._ports.values())
            subnets = dict(self._subnets)
        mtus = self._mtus.get() if self._mtus is not None else {}
        rendered = render(ports, subnets, self.options, mtus)
        problems = set(rendered.problems)
        for problem in sorted(problems - self._problems):
            log.warning("%s", problem)
        self._problems = problems
        ok = self.manager.apply(rendered.networks)
        self.applied = rendered.networks
        return ok


class _EndpointCallbacks:
    def __init__(self, agent: DhcpAgent) -> None:
        self._agent = agent

    def on_status(self, status: SyncStatus) -> None:
        self._agent._on_status("endpoints", status)

    def on_resource_updates(self, updates: Sequence[ResourceUpdate]) -> None:
        self._agent._on_endpoints(updates)


class _SubnetCallbacks:
    def __init__(self, agent: DhcpAgent) -> None:
        self._agent = agent

    def on_status(self, status: SyncStatus) -> None:
        self._agent._on_status("subnets", status)

    def on_updates(self, updates: Sequence[Update]) -> None:
        self._agent._on_subnets(updates)
