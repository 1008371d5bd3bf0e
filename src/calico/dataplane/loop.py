"""The dataplane thread: calculation messages in, kernel programmed in batches.

    send(batch) ─► queue ─► managers.on_update (record intent, no I/O)
    iface events ─┘               │ once the queue is drained, if in sync:
                                  ▼
     complete_deferred_work → IP set creates/updates → iptables (raw, mangle, nat, filter,
     but a table a policy moves into before the one it leaves; one restore per table)
     → IP set deletions → sysctls → routes (deletions → conntrack entries of released
     addresses, in the background unless re-routed now → additions)
     → VXLAN devices, neighbours, FDB, then their routes (a VXLAN failure cannot hold up
     the workloads' routes) → the MTU file

Pacing: after an apply that took d seconds, the next one starts no sooner than
min(HOLDOFF * d, MAX_HOLDOFF) later: under a stream of changes the loop spends at most a
quarter of its time applying (while applies take under 80 ms) and each apply takes all that
queued up meanwhile; a change after a quiet spell is applied at once. (At 150 changes/s,
applying every ~70 ms meant 28 iptables-restores/s, most of Felix's CPU: bench/churn_rate.py.)

Nothing is written before the first InSync and the interface monitor's first full dump:
Felix must know the whole datastore, and every interface (host endpoints resolve to them,
endpoint status follows them), before it touches a kernel that may hold a previous Felix's
correct state. A failed apply leaves the drivers dirty and is retried with backoff; periodic
refreshes re-read the kernel and repair tampering (the iptables one only if the nftables
generation moved, where Felix can read it). Health: live while the loop turns, ready after
the first successful apply.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from calico.backoff import Backoff
from calico.calc.messages import (
    ActivePolicyRemove,
    ActivePolicyUpdate,
    InSync,
    Message,
    PolicyID,
)
from calico.dataplane.drivers.conntrack import ConntrackCleaner, ConntrackFlows
from calico.dataplane.drivers.deny_counters import DenyCounts, read_deny_counters
from calico.dataplane.drivers.iface_monitor import InterfaceMonitor
from calico.dataplane.drivers.ipsets import IPSets, IPSetWriter
from calico.dataplane.drivers.iptables_table import IptablesTable, apply_tables, detect_backend
from calico.dataplane.drivers.links import (
    LinkConfigurator,
    SysctlCommands,
    Sysctls,
    SysctlWriteFailed,
)
from calico.dataplane.drivers.netlink_dump import LeanDumps
from calico.dataplane.drivers.nft_generation import GenerationTracker
from calico.dataplane.drivers.routetable import BLACKHOLE, RouteTable
from calico.dataplane.drivers.vxlan import VXLANDevice
from calico.dataplane.managers import Manager
from calico.dataplane.managers.endpoints import EndpointManager, ResolvedCallback, StatusCallback
from calico.dataplane.managers.ipsets import IPSetsManager
from calico.dataplane.managers.nat import NatManager
from calico.dataplane.managers.policy import PolicyManager
from calico.dataplane.managers.vxlan import VXLANManager, VXLANSettings
from calico.model.vxlan import device_name
from calico.programs import CommandFailed, CommandRunner
from calico.rules.config import RulesConfig
from calico.rules.nat import static_nat_chains
from calico.rules.static import hooks, static_filter_chains, static_mangle_chains, static_raw_chains

log = logging.getLogger(__name__)

TABLES = ("raw", "mangle", "nat", "filter")
HOLDOFF = 3.0  # times the last apply's duration (see the module's doc)
MAX_HOLDOFF = 0.25  # s: what a change may wait for that


@dataclass(frozen=True, slots=True)
class DataplaneSettings:
    rules: RulesConfig
    iptables_backend: str = "auto"  # auto, nft, legacy
    iptables_refresh: float = 90.0
    ipsets_refresh: float = 90.0
    route_refresh: float = 90.0
    interface_refresh: float = 90.0  # rescan of all interfaces, in case an event was missed
    remove_external_routes: bool = True
    route_grace_period: float = 10.0  # before a non-Calico route on a workload's interface goes
    hostname: str = ""  # this host's name, to tell its own VTEP from the others
    vxlan: VXLANSettings = field(default_factory=VXLANSettings)


@dataclass(frozen=True, slots=True)
class ApplyStats:
    """What one apply did, for metrics."""

    seconds: float
    ok: bool
    endpoints: int
    policies: int
    ipsets: int
    drift_repaired: Mapping[str, int]  # since start, per kind of kernel object


@dataclass(frozen=True, slots=True)
class _IfaceState:
    name: str
    up: bool
    index: int


@dataclass(frozen=True, slots=True)
class _IfaceAddrs:
    name: str
    addrs: frozenset[str]


@dataclass(frozen=True, slots=True)
class _IfacesInSync:
    """The interface monitor has reported its first full dump."""


class _Timer:
    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        self.due = now + interval if interval > 0 else float("inf")

    def fire(self, now: float) -> bool:
        if now < self.due:
            return False
        self.due = now + self.interval
        return True


class InternalDataplane:
    def __init__(
        self,
        settings: DataplaneSettings,
        runner: CommandRunner,
        netlink_factory: Callable[[], Any],
        on_endpoint_status: StatusCallback | None = None,
        on_health: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_applied: Callable[[ApplyStats], None] | None = None,
        nft_generation: Callable[[], int] | None = None,
        on_host_endpoints: ResolvedCallback | None = None,
        sysctls: Sysctls | None = None,
    ) -> None:
        """`sysctls`: by default the `sysctl` program through `runner`; Felix, inside the
        namespace it manages, passes `SysctlFiles()`."""
        cfg = settings.rules
        self._settings = settings
        self._runner = runner
        self._clock = clock
        self._on_health = on_health
        self._on_applied = on_applied
        self._policies: set[PolicyID] = set()
        backend = settings.iptables_backend
        families = cfg.ip_versions
        self._tracker = GenerationTracker(nft_generation) if nft_generation is not None else None
        self._detect_saves: tuple[int, dict[tuple[str, int], str]] | None = None
        self._backend_known = backend != "auto"
        self.tables = [
            IptablesTable(t, v, runner, backend=backend, insert_mode=cfg.chain_insert_mode)
            for v in families
            for t in TABLES
        ]
        # With the nft backend, a refresh skips re-reading the tables while the ruleset
        # generation shows no commit since our view was verified (drivers/nft_generation).
        self._nft = self._tracker if backend == "nft" else None
        self.ipsets = [IPSets(v, runner) for v in families]
        self._ipset_writer = IPSetWriter(runner, self.ipsets)
        self.conntrack = ConntrackCleaner(ConntrackFlows(runner))
        self.routes = {
            v: RouteTable(
                runner,
                netlink_factory,
                v,
                iface_prefixes=cfg.workload_iface_prefixes,
                remove_external_routes=settings.remove_external_routes,
                grace_period=settings.route_grace_period,
                conntrack=self.conntrack,
            )
            for v in families
        }
        self.links = LinkConfigurator(sysctls or SysctlCommands(runner), ipv6=6 in families)
        self.endpoints = EndpointManager(
            cfg, self.tables, self.routes, self.links, on_endpoint_status, on_host_endpoints
        )
        self.vxlan = self._vxlan_manager(settings, runner, netlink_factory)
        self.managers: list[Manager] = [
            IPSetsManager(self.ipsets),
            PolicyManager(cfg, self.tables),
            self.endpoints,
            NatManager(cfg, self.tables, self.ipsets),
            self.vxlan,
        ]
        self._install_static(cfg)
        self._queue: queue.Queue[object] = queue.Queue()
        self._monitor = InterfaceMonitor(
            lambda: LeanDumps(netlink_factory()),
            on_state=lambda name, up, index: self._queue.put(_IfaceState(name, up, index)),
            on_addrs=lambda name, addrs: self._queue.put(_IfaceAddrs(name, frozenset(addrs))),
            on_in_sync=lambda: self._queue.put(_IfacesInSync()),
            resync_interval=settings.interface_refresh,
        )
        self._ifaces_in_sync = False
        self._in_sync = False
        self._dirty = True
        self._applied_once = False
        self._retry_at: float | None = None
        self._hold_until = 0.0
        self._backoff = Backoff(initial=0.1, maximum=5.0)
        now = clock()
        self._refresh = {
            "iptables": _Timer(settings.iptables_refresh, now),
            "ipsets": _Timer(settings.ipsets_refresh, now),
            "routes": _Timer(settings.route_refresh, now),
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="felix-dataplane", daemon=True)
        self.failure: BaseException | None = None

    def _vxlan_manager(
        self, settings: DataplaneSettings, runner: CommandRunner, netlink_factory: Callable[[], Any]
    ) -> VXLANManager:
        """VXLAN routes live in their own table object: other interfaces, and only protocol
        80 routes are removed (the parent interface carries the host's own routes)."""
        families = settings.rules.ip_versions
        routes = {
            v: RouteTable(
                runner,
                netlink_factory,
                v,
                iface_prefixes=(device_name(v), BLACKHOLE),
                remove_external_routes=False,
                static_neigh=False,
            )
            for v in families
        }
        devices = {v: VXLANDevice(runner, v) for v in families}
        return VXLANManager(
            settings.hostname,
            settings.rules,
            settings.vxlan,
            self.tables,
            self.ipsets,
            devices,
            routes,
        )

    def _route_tables(self) -> list[RouteTable]:
        return [*self.routes.values(), *self.vxlan.routes.values()]

    def _install_static(self, cfg: RulesConfig) -> None:
        builders = {
            "filter": static_filter_chains,
            "mangle": static_mangle_chains,
            "nat": static_nat_chains,
            "raw": static_raw_chains,
        }
        for table in self.tables:
            table.update_chains(builders[table.table](cfg, table.ip_version))
            table.set_hooks(hooks(cfg, table.table))

    # -- thread API -----------------------------------------------------------------------

    def send(self, batch: Sequence[Message]) -> None:
        """Called from the calculation thread."""
        self._queue.put(list(batch))

    def start(self) -> None:
        self._monitor.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._monitor.stop()
        for table in self._route_tables():
            table.close()
        self.conntrack.close()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # -- loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._resolve_backend()
            while not self._stop.is_set():
                self._drain(self._wait_time())
                self._maybe_apply()
                if self._on_health is not None:
                    self._on_health(self._applied_once)
        except BaseException as exc:  # the supervisor exits Felix; restart resyncs
            log.exception("dataplane loop died")
            self.failure = exc
            raise

    def _wait_time(self) -> float:
        now = self._clock()
        deadlines = [t.due for t in self._refresh.values()]
        if self._retry_at is not None:
            deadlines.append(self._retry_at)
        if self._dirty and self._in_sync and self._ifaces_in_sync:
            # Before both syncs nothing can apply: waiting on the hold-off (0 at first)
            # would spin this thread, taking the GIL from the syncer and the calc graph.
            deadlines.append(self._hold_until)
        if any(r.needs_apply for r in self._route_tables()):
            deadlines.append(now + 1.0)  # external routes in their grace period
        return max(0.0, min([now + 10.0, *deadlines]) - now)

    def _drain(self, timeout: float) -> None:
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._handle(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return

    def _handle(self, item: object) -> None:
        if isinstance(item, list):
            for msg in item:
                if isinstance(msg, InSync):
                    self._in_sync = True
                elif isinstance(msg, ActivePolicyUpdate | ActivePolicyRemove):
                    self._policy_ids_changed(msg)
                for manager in self.managers:
                    manager.on_update(msg)
        elif isinstance(item, _IfaceState):
            self.endpoints.on_iface_state(item.name, item.up, item.index)
            self.vxlan.on_iface_state(item.name, item.up, item.index)
        elif isinstance(item, _IfaceAddrs):
            self.endpoints.on_iface_addrs(item.name, set(item.addrs))
        elif isinstance(item, _IfacesInSync):
            self._ifaces_in_sync = True
        else:
            return
        self._dirty = True

    def _maybe_apply(self) -> None:
        if not (self._in_sync and self._ifaces_in_sync):
            return
        now = self._clock()
        if self._refresh["iptables"].fire(now) and not self._nft_unchanged():
            for table in self.tables:
                table.resync()
            self._dirty = True
        if self._refresh["ipsets"].fire(now):
            for ipsets in self.ipsets:
                ipsets.resync()
            self._dirty = True
        if self._refresh["routes"].fire(now):
            for routes in self._route_tables():
                routes.resync()
            self.links.resync()
            self.vxlan.resync()
            self._dirty = True
        pending_routes = any(r.needs_apply for r in self._route_tables())
        retry_due = self._retry_at is not None and now >= self._retry_at
        if (self._dirty or pending_routes or retry_due) and now >= self._hold_until:
            self._apply()

    def _nft_unchanged(self) -> bool:
        if self._nft is None or not self._nft.unchanged():
            return False
        log.debug("iptables refresh skipped: nftables generation %s unchanged", self._nft.trusted)
        return True

    def _policy_ids_changed(self, msg: ActivePolicyUpdate | ActivePolicyRemove) -> None:
        if isinstance(msg, ActivePolicyUpdate):
            self._policies.add(msg.id)
        else:
            self._policies.discard(msg.id)

    def _apply(self) -> None:
        started = self._clock()
        ok = self._apply_once()
        took = self._clock() - started
        self._hold_until = started + took + min(HOLDOFF * took, MAX_HOLDOFF)
        if self._on_applied is not None:
            self._on_applied(
                ApplyStats(
                    seconds=took,
                    ok=ok,
                    endpoints=len(list(self.endpoints.workload_endpoints())),
                    policies=len(self._policies),
                    ipsets=sum(len(s.desired_ids()) for s in self.ipsets),
                    drift_repaired={
                        "iptables": sum(t.drift_repaired for t in self.tables),
                        "ipsets": sum(s.drift_repaired for s in self.ipsets),
                    },
                )
            )

    def deny_counters(self) -> DenyCounts:
        """What each rendered deny rule has dropped, read from the kernel now."""
        return read_deny_counters(
            self._runner, self.tables[0].backend, self._settings.rules.ip_versions
        )

    def _resolve_backend(self) -> None:
        """iptables backend "auto": detected on the dataplane's thread as it starts, not in
        the constructor, so that the saves (~0.3 s a family with a large ruleset) overlap
        the datastore listing and the calc graph instead of delaying them. The saves serve
        as the first apply's read when no nft commit happened since (one `iptables-nft-save`
        per family less at every start)."""
        if self._backend_known:
            return
        self._backend_known = True
        tracker = self._tracker
        saves: dict[tuple[str, int], str] = {}
        before = tracker.now() if tracker is not None else None
        backend = detect_backend(self._runner, saves)
        if before is not None and tracker is not None and tracker.now() == before:
            self._detect_saves = (before, saves)
        for table in self.tables:
            table.use_backend(backend)
        self._nft = tracker if backend == "nft" else None

    def write_kernel(self) -> None:
        """One apply, in dependency order; raises on failure (the loop retries later)."""
        self._resolve_backend()  # done already when the loop's thread runs
        for manager in self.managers:
            manager.complete_deferred_work()
        self._ipset_writer.apply_updates()  # both families: one `ipset restore`
        self._apply_tables()
        self._ipset_writer.apply_deletions()
        self.links.apply()
        for routes in self.routes.values():
            routes.apply()
        self.vxlan.apply()

    def _apply_tables(self) -> None:
        tracker = self._nft
        if tracker is None or not any(t.dirty for t in self.tables):
            apply_tables(self.tables)
            return
        generation = tracker.begin()
        detected, self._detect_saves = self._detect_saves, None
        saved = detected[1] if detected is not None and detected[0] == generation else None
        verified = all(t.needs_read for t in self.tables)
        commits = sum(t.commits for t in self.tables)
        try:
            apply_tables(self.tables, saved)
        except BaseException:
            tracker.forget()
            raise
        tracker.end(sum(t.commits for t in self.tables) - commits, verified)

    def _apply_once(self) -> bool:
        try:
            self.write_kernel()
        except Exception as exc:
            delay = self._backoff.delay()
            if isinstance(exc, CommandFailed | SysctlWriteFailed):  # e.g. a workload's
                # interface gone mid-apply: the message says it all (a traceback per churned
                # veth said nothing)
                detail = " | ".join(str(exc).strip().splitlines()[:3])
                log.warning("dataplane apply failed: %s; retrying in %.1fs", detail, delay)
            else:
                log.exception("dataplane apply failed; retrying in %.1fs", delay)
            self.endpoints.mark_error()
            self._retry_at = self._clock() + delay
            return False
        self._dirty = False
        self._retry_at = None
        self._backoff.reset()
        if not self._applied_once:
            log.info("dataplane in sync with the datastore")
        self._applied_once = True
        return True
