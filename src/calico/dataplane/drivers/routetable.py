"""Workload routes in one kernel routing table: desired state kept in memory, diffed against
the kernel, written in bulk.

Role: the endpoint manager declares, per workload interface, the CIDRs routed to it (plus the
workload's MAC when known); `apply()` makes the table agree. Inputs: `set_routes` /
`remove_interface` (desired state), `on_iface_state` (interface monitor), `resync()`
(periodic refresh, tamper repair). Outputs: `ip route` / `ip neigh` changes and, given a
`conntrack` cleaner, the deletion of the tracked flows of every host address whose route left
the interface it was on (the workload went, lost the address, or moved), started once the
route is deleted (Calico's conntrack cleanup). An interface is a name AND an index, as in
Calico, which tracks a route's owner by interface index: a veth deleted and re-created under
the same name (a pod re-created under its own name, given its address back) is a new
interface whose workload must not inherit the old one's flows, even when Felix sees the
deletion and the re-creation in one apply; a route that stays on, or comes back to, the same
interface (a metric fix, a remove-and-re-add of the endpoint, a down/up flap) keeps them.
A route to an address whose deletion is still outstanding is added only after it, so a
workload that gets the address next inherits no flow; if that deletion fails, the apply
fails and is retried. An address that lost its route is cleaned once more just before it is
routed again (the last `_GONE_MEMORY` of them): where no blackhole route of a local block
drops a late packet of the gone workload's flow, the default route forwards it and its
entry comes back.

Ownership, so that a restarted Felix recognises its own routes: a route in `table` on an
interface matching `iface_prefixes` whose protocol is `protocol` (default 80, the number Felix
gives the routes it must recognise; Felix's historical default "boot" (3) is shared with other
software). Routes on other interfaces are never touched. Other routes on workload interfaces
("external", e.g. added by a CNI plugin before Felix heard of the endpoint) are taken over
when desired and otherwise, like Calico's RemoveExternalRoutes=true, deleted once the
interface has been known for `grace_period` seconds; `remove_external_routes=False` leaves
them alone. Kernel routes (proto 2, e.g. fe80::/64) are never touched. Permanent IPv4
neighbour (ARP) entries on workload interfaces are ours.

The same reconciler owns the VXLAN manager's routes: a target may have a gateway (`via`,
optionally `onlink`), and the pseudo-interface `BLACKHOLE` holds blackhole routes. Such a
table owns interfaces by name prefix (the VXLAN device, the parent interface once known,
see `own`), keeps no neighbours (`static_neigh=False`) and removes only its own protocol's
routes (`remove_external_routes=False`).

Invariants: routes are programmed only on interfaces that exist and are oper-up; the routes
of a down interface stay desired and are programmed when it comes up. The in-memory view of
the kernel is rebuilt by a full read (first apply, `resync()`, after any failure) and is
otherwise changed only by our own successful writes, so what others do behind our back is
found by the next full read. Not thread-safe: call it from the dataplane thread only.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from calico.dataplane.drivers.conntrack import ConntrackCleaner
from calico.programs import CommandRunner

_log = logging.getLogger(__name__)

RTPROT_CALICO = 80
"""Protocol of every route a RouteTable programs (Felix's `DefaultRouteProto`)."""
MAIN_TABLE = 254
_RTPROT_BOOT = 3  # what iproute2 omits from its output
_RTPROT_KERNEL = 2
_SCOPE_LINK = 253
_SCOPE_NOWHERE = 255  # in a delete: match a route of any scope (as `ip route del`)
_NUD_PERMANENT = 0x80
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_DEFAULT_METRIC = {4: 0, 6: 1024}  # what the kernel assigns when none is given
_NETLINK_MAX_OPS = 4  # up to this many changes: netlink; more: one `ip -batch`
BLACKHOLE = "*blackhole*"
"""Pseudo-interface of blackhole routes (no device; always up)."""
_RTN_BLACKHOLE = "6"  # how `ip -N` prints a blackhole route's type
_GONE = ("", 0)  # the holder of a host address whose route went
_GONE_MEMORY = 65536  # ~7 MiB at most; reused addresses come from a few IPAM blocks


class RouteNetlink(Protocol):
    """The slice of a pyroute2 IPRoute used for small, targeted writes."""

    def route(self, command: str, **kwargs: Any) -> object: ...

    def neigh(self, command: str, **kwargs: Any) -> object: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """A CIDR routed (`scope link`) to a workload interface, and the workload's MAC if known;
    or, with `gateway`, routed via that next hop (`onlink`: without checking it is on-link)."""

    cidr: str
    mac: str | None = None
    gateway: str | None = None
    onlink: bool = False

    @property
    def via(self) -> str:
        """The route's shape as `_Route.via` records it."""
        if self.gateway is None:
            return ""
        return f"via {self.gateway}" + (" onlink" if self.onlink else "")


@dataclass(frozen=True, slots=True)
class _Route:
    """A kernel route on a workload interface, reduced to what ownership and diffing need."""

    iface: str
    proto: int
    via: str | None  # "": device route in our scope; "via GW [onlink]"; "blackhole"; None: other


class _Kind(enum.IntEnum):
    """Kinds of change, in execution order: deletes first, so a moved CIDR never collides."""

    NEIGH_DEL = 0
    ROUTE_DEL = 1
    ROUTE_REPLACE = 2
    NEIGH_REPLACE = 3


@dataclass(frozen=True, slots=True)
class _Op:
    kind: _Kind
    iface: str
    cidr: str
    metric: int = 0
    proto: int = 0
    mac: str = ""
    via: str = ""

    @property
    def addr(self) -> str:
        return self.cidr.partition("/")[0]


_BATCH_LINES = {
    _Kind.NEIGH_DEL: "neigh del {op.addr} dev {op.iface}",
    _Kind.ROUTE_DEL: "route del {op.cidr} dev {op.iface} proto {op.proto} metric {op.metric}"
    " table {table}",
    _Kind.ROUTE_REPLACE: "route replace {op.cidr}{via} dev {op.iface}{scope} proto {op.proto}"
    " table {table}",
    _Kind.NEIGH_REPLACE: "neigh replace {op.addr} lladdr {op.mac} dev {op.iface} nud permanent",
}


def _batch_line(op: _Op, table: int) -> str:
    """One `ip -batch` line; a blackhole route names no device."""
    if op.iface == BLACKHOLE:
        verb = "replace" if op.kind is _Kind.ROUTE_REPLACE else "del"
        metric = f" metric {op.metric}" if op.kind is _Kind.ROUTE_DEL else ""
        return f"route {verb} blackhole {op.cidr} proto {op.proto}{metric} table {table}\n"
    via, scope = (f" {op.via}", "") if op.via else ("", " scope link")
    return _BATCH_LINES[op.kind].format(op=op, table=table, via=via, scope=scope) + "\n"


class _KernelView:
    """The table's routes on workload interfaces and their permanent neighbours, keyed the
    way the kernel keys them: a route by (CIDR, metric), a neighbour by (interface, address)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, int], _Route] = {}
        self.by_iface: dict[str, set[tuple[str, int]]] = {}
        self.neighs: dict[str, dict[str, str]] = {}

    def routes_on(self, iface: str) -> list[tuple[tuple[str, int], _Route]]:
        return [(key, self.routes[key]) for key in self.by_iface.get(iface, ())]

    def add_route(self, key: tuple[str, int], route: _Route) -> None:
        self.remove_route(key)
        self.routes[key] = route
        self.by_iface.setdefault(route.iface, set()).add(key)

    def remove_route(self, key: tuple[str, int]) -> None:
        old = self.routes.pop(key, None)
        if old is not None:
            keys = self.by_iface[old.iface]
            keys.discard(key)
            if not keys:
                del self.by_iface[old.iface]

    def forget_iface(self, iface: str) -> None:
        for key in self.by_iface.pop(iface, ()):
            del self.routes[key]
        self.neighs.pop(iface, None)

    def record(self, op: _Op, metric: int) -> None:
        """Reflects one of our own successful writes (a replace gets the default metric)."""
        if op.kind is _Kind.ROUTE_REPLACE:
            self.add_route((op.cidr, metric), _Route(op.iface, op.proto, op.via))
        elif op.kind is _Kind.ROUTE_DEL:
            self.remove_route((op.cidr, op.metric))
        elif op.kind is _Kind.NEIGH_REPLACE:
            self.neighs.setdefault(op.iface, {})[op.addr] = op.mac
        else:
            self.neighs.get(op.iface, {}).pop(op.addr, None)


class RouteTable:
    """Reconciles the workload routes (and static ARP entries) of one IP version and table."""

    def __init__(
        self,
        runner: CommandRunner,
        netlink_factory: Callable[[], RouteNetlink],
        ip_version: int,
        iface_prefixes: Iterable[str] = ("cali",),
        protocol: int = RTPROT_CALICO,
        table: int = MAIN_TABLE,
        *,
        remove_external_routes: bool = True,
        grace_period: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        conntrack: ConntrackCleaner | None = None,
        static_neigh: bool | None = None,
    ) -> None:
        if ip_version not in _FAMILY:
            raise ValueError(f"ip_version must be 4 or 6, not {ip_version}")
        self._runner = runner
        self._netlink_factory = netlink_factory
        self._netlink: RouteNetlink | None = None
        self.ip_version = ip_version
        self.iface_prefixes = tuple(iface_prefixes)
        self.protocol = protocol
        self.table = table
        self.remove_external_routes = remove_external_routes
        self.grace_period = grace_period
        self._clock = clock
        self._metric = _DEFAULT_METRIC[ip_version]
        self._host_len = 32 if ip_version == 4 else 128
        self._static_neigh = ip_version == 4 if static_neigh is None else static_neigh
        self._desired: dict[str, dict[str, RouteTarget]] = {}
        self._claims: dict[str, set[str]] = {}  # CIDR -> interfaces that want it
        self._index: dict[str, int] = {}
        self._up: set[str] = {BLACKHOLE}
        self._first_seen: dict[str, float] = {}
        self._view = _KernelView()
        self._dirty: set[str] = set()
        self._need_read = True
        self._conntrack = conntrack
        # With conntrack: host CIDR -> the interface (name, index) our route to it is on, the
        # same by interface name, and the host CIDRs whose flows may have to go.
        self._owner: dict[str, tuple[str, int]] = {}
        self._owned: dict[str, set[str]] = {}
        self._released: set[str] = set()
        self._gone: dict[str, None] = {}  # host CIDRs that lost their route, oldest first

    @property
    def needs_apply(self) -> bool:
        return self._need_read or bool(self._dirty)

    def set_routes(self, iface: str, targets: Iterable[RouteTarget]) -> None:
        """Declares the complete set of routes `iface` should have (empty: none)."""
        if not iface.startswith(self.iface_prefixes):
            raise ValueError(f"{iface} does not match the workload prefixes {self.iface_prefixes}")
        new = {t.cidr: t for t in map(self._canonical, targets)}
        old = self._desired.pop(iface, {})
        if new:
            self._desired[iface] = new
        if new == old:
            return
        for cidr in old.keys() - new.keys():
            self._note_released(cidr)
            claimants = self._claims[cidr]
            claimants.discard(iface)
            if not claimants:
                del self._claims[cidr]
        for cidr in new.keys() - old.keys():
            self._claims.setdefault(cidr, set()).add(iface)
        self._dirty.add(iface)
        for cidr in old.keys() ^ new.keys():
            self._dirty.update(self._claims.get(cidr, ()))

    def remove_interface(self, iface: str) -> None:
        self.set_routes(iface, ())

    def own(self, iface: str) -> None:
        """Adds an interface (by prefix) to those this table owns; ownership only grows, so
        routes left on an interface given up are still removed. The next apply re-reads."""
        if not iface.startswith(self.iface_prefixes):
            self.iface_prefixes += (iface,)
            self._need_read = True

    def on_iface_state(self, iface: str, up: bool, index: int) -> None:
        """Interface monitor callback; `index` 0 means the interface no longer exists. On any
        change the kernel may have flushed the interface's routes (down, gone) or kept some
        (carrier loss), so our view of it is dropped: coming up rewrites all its routes, and
        leftovers wait for the next full read."""
        recreated = self._index.get(iface, index) != index
        if recreated:
            self._released.update(self._owned.get(iface, ()))  # that interface is gone
        if index:
            self._index[iface] = index
            self._first_seen.setdefault(iface, self._clock())
        else:
            self._index.pop(iface, None)
            self._first_seen.pop(iface, None)
        is_up = bool(up and index)
        if index and is_up == (iface in self._up) and not recreated:
            return
        if is_up:
            self._up.add(iface)
        else:
            self._up.discard(iface)
        self._view.forget_iface(iface)
        self._mark_with_rivals(iface)

    def resync(self) -> None:
        """Makes the next apply() re-read the whole table (refresh, tamper repair)."""
        self._need_read = True

    def apply(self) -> None:
        """Makes the kernel match the desired state. On failure it raises and stays dirty;
        the next apply() re-reads the kernel and retries only what is still needed."""
        now = self._clock()
        try:
            if self._need_read:
                self._read_kernel(now)
            ops, recheck = self._plan(now)
            if self._conntrack is None:
                self._execute(ops)
            else:
                adds = next((i for i, op in enumerate(ops) if op.kind > _Kind.ROUTE_DEL), len(ops))
                for op in ops[:adds]:
                    if op.kind is _Kind.ROUTE_DEL:
                        self._note_released(op.cidr)  # also others' or stale routes
                self._execute(ops[:adds])
                routes = [op for op in ops[adds:] if op.kind is _Kind.ROUTE_REPLACE]
                self._release_flows(self._conntrack, routes)
                self._conntrack.flush(op.addr for op in routes)  # their old flows go first
                self._execute(ops[adds:])
        except Exception:
            self._need_read = True
            raise
        self._dirty = recheck

    def _note_released(self, cidr: str) -> None:
        if self._conntrack is not None and cidr.endswith(f"/{self._host_len}"):
            self._released.add(cidr)

    def _release_flows(self, conntrack: ConntrackCleaner, routes: list[_Op]) -> None:
        """Once the deletions are done and before `routes` are added: hands over the flows of
        every released or newly routed host address that is not routed to the interface,
        name and index, its route was on (kept: a metric fix, a remove-and-re-add, a flap),
        and records where each is routed now."""
        new = {op.cidr: (op.iface, self._index.get(op.iface, 0)) for op in routes}
        for cidr in sorted(self._released | new.keys()):
            if not cidr.endswith(f"/{self._host_len}"):
                continue
            holder = new.get(cidr) or self._holder(cidr)
            owner = self._owner.get(cidr) or (_GONE if holder and cidr in self._gone else None)
            # A released address is cleaned even if we never routed it: its workload's own
            # outbound flows need no route (an endpoint created and deleted while routes lag).
            released = cidr in self._released and (holder is None or holder != owner)
            if released or owner not in (None, holder):
                conntrack.submit(self.ip_version, cidr.partition("/")[0])
                if holder is None:
                    self._gone[cidr] = None
                    if len(self._gone) > _GONE_MEMORY:
                        del self._gone[next(iter(self._gone))]
            self._set_owner(cidr, holder)
        self._released.clear()

    def _holder(self, cidr: str) -> tuple[str, int] | None:
        """The interface a host CIDR is routed to once the deletions are done: where our view
        has its route, else the interface that wants it if that is down (the kernel flushed
        the route; it comes back on the same interface when that comes up)."""
        route = self._view.routes.get((cidr, self._metric))
        iface = route.iface if route else self._winner(cidr) if cidr in self._claims else None
        if iface is None or (route is None and (iface in self._up or iface not in self._index)):
            return None
        return iface, self._index.get(iface, 0)

    def _set_owner(self, cidr: str, owner: tuple[str, int] | None) -> None:
        old = self._owner.pop(cidr, None)
        if old is not None:
            owned = self._owned[old[0]]
            owned.discard(cidr)
            if not owned:
                del self._owned[old[0]]
        if owner is not None:
            self._gone.pop(cidr, None)
            self._owner[cidr] = owner
            self._owned.setdefault(owner[0], set()).add(cidr)

    def _adopt_owners(self, old_index: dict[str, int]) -> None:
        """After a full read: the host addresses of interfaces that went or were re-created
        behind our back are released; a route found where we knew none is adopted as it is
        (no earlier holder whose flows could leak); one found elsewhere is released."""
        for iface, index in old_index.items():
            if self._index.get(iface) != index:
                self._released.update(self._owned.get(iface, ()))
        for (cidr, _), route in self._view.routes.items():
            if not cidr.endswith(f"/{self._host_len}"):
                continue
            holder = (route.iface, self._index.get(route.iface, 0))
            if cidr not in self._owner:
                self._set_owner(cidr, holder)
            elif self._owner[cidr] != holder:
                self._released.add(cidr)

    def close(self) -> None:
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None

    def _canonical(self, target: RouteTarget) -> RouteTarget:
        """The CIDR as the kernel prints it (inet_ntop), so it compares with what `ip` shows;
        inet_pton keeps this ~10x cheaper than ipaddress for the usual host routes."""
        addr, _, length = target.cidr.partition("/")
        try:
            packed = socket.inet_pton(_FAMILY[self.ip_version], addr)
        except OSError:
            raise ValueError(f"{target.cidr} is not an IPv{self.ip_version} CIDR") from None
        if length and length != str(self._host_len):
            ipaddress.ip_network(target.cidr)  # raises ValueError if host bits are set
        cidr = (
            f"{socket.inet_ntop(_FAMILY[self.ip_version], packed)}/{int(length or self._host_len)}"
        )
        gateway = str(ipaddress.ip_address(target.gateway)) if target.gateway else None
        return RouteTarget(cidr, target.mac.lower() if target.mac else None, gateway, target.onlink)

    def _mark_with_rivals(self, iface: str) -> None:
        """Marks `iface` dirty, and the other claimants of its CIDRs, whose winner may change."""
        self._dirty.add(iface)
        for cidr in self._desired.get(iface, ()):
            if len(self._claims[cidr]) > 1:
                self._dirty.update(self._claims[cidr])

    def _winner(self, cidr: str) -> str | None:
        """Where a CIDR claimed by several interfaces goes: the first up one, by name."""
        claimants = self._claims[cidr]
        if len(claimants) == 1:
            return next(iter(claimants))  # the common case, kept cheap
        return min((i for i in claimants if i in self._up), default=None)

    def _read_kernel(self, now: float) -> None:
        """One `ip -batch` reads links, routes and permanent neighbours (40x faster than a
        pyroute2 dump of 10k routes, whose message parsing dominates)."""
        script = f"link show\nroute show table {self.table}\n"
        if self._static_neigh:
            script += "neigh show nud permanent\n"
        args = ["ip", "-j", "-N", f"-{self.ip_version}", "-batch", "-"]
        out = self._runner.run(args, stdin=script).stdout
        dumps: list[list[dict[str, Any]]] = [json.loads(ln) for ln in out.splitlines() if ln]
        if len(dumps) != script.count("\n"):
            raise ValueError(f"unexpected output from ip -batch for {script!r}: {out[:200]!r}")
        links = dumps[0]
        old_index, self._index = self._index, {link["ifname"]: link["ifindex"] for link in links}
        self._up = {link["ifname"] for link in links if link.get("operstate") in ("UP", "UNKNOWN")}
        self._up.add(BLACKHOLE)
        self._first_seen = {name: self._first_seen.get(name, now) for name in self._index}
        self._view = self._load_view(dumps[1], dumps[2] if self._static_neigh else [])
        if self._conntrack is not None:
            self._adopt_owners(old_index)
        self._dirty = set(self._desired) | set(self._view.by_iface) | set(self._view.neighs)
        self._need_read = False

    def _load_view(self, routes: list[dict[str, Any]], neighs: list[dict[str, Any]]) -> _KernelView:
        view, prefixes = _KernelView(), self.iface_prefixes
        for entry in routes:
            kind = entry.get("type")
            iface = BLACKHOLE if kind == _RTN_BLACKHOLE else entry.get("dev")
            if not iface or kind not in (None, _RTN_BLACKHOLE) or not iface.startswith(prefixes):
                continue  # not on an interface of ours, multipath, or another type
            proto = int(entry.get("protocol", _RTPROT_BOOT))
            if proto == _RTPROT_KERNEL:
                continue
            dst = entry["dst"]
            if dst == "default":
                dst = "0.0.0.0/0" if self.ip_version == 4 else "::/0"
            key = (dst if "/" in dst else f"{dst}/{self._host_len}", int(entry.get("metric", 0)))
            view.routes[key] = _Route(iface, proto, self._via(entry))  # kernel keys are unique
            view.by_iface.setdefault(iface, set()).add(key)
        for entry in neighs:
            iface = entry.get("dev")
            if iface and "lladdr" in entry and iface.startswith(prefixes):
                view.neighs.setdefault(iface, {})[entry["dst"]] = entry["lladdr"].lower()
        return view

    def _via(self, entry: dict[str, Any]) -> str | None:
        """A kernel route's shape, as `RouteTarget.via` (None: one we never program)."""
        if entry.get("type") == _RTN_BLACKHOLE:
            return "blackhole"
        if "gateway" in entry:
            return f"via {entry['gateway']}" + (" onlink" if "onlink" in entry["flags"] else "")
        scope_ok = self.ip_version == 6 or entry.get("scope") == str(_SCOPE_LINK)
        return "" if scope_ok else None

    def _plan(self, now: float) -> tuple[list[_Op], set[str]]:
        """The changes for every dirty interface, and the interfaces to look at again."""
        ops: list[_Op] = []
        recheck = set()
        for iface in sorted(self._dirty):
            if self._plan_iface(iface, now, ops):
                recheck.add(iface)
        ops.sort(key=lambda op: op.kind)
        return ops, recheck

    def _plan_iface(self, iface: str, now: float, ops: list[_Op]) -> bool:
        """Appends what makes `iface` right; True if external routes await their grace."""
        up = iface in self._up
        desired = self._desired.get(iface, {})
        want = {c: t for c, t in desired.items() if up and self._winner(c) == iface}
        keep = want if up else desired
        for cidr, target in want.items():
            via = "blackhole" if iface == BLACKHOLE else target.via
            if self._view.routes.get((cidr, self._metric)) != _Route(iface, self.protocol, via):
                ops.append(_Op(_Kind.ROUTE_REPLACE, iface, cidr, proto=self.protocol, via=via))
        waiting = False
        for (cidr, metric), route in self._view.routes_on(iface):
            if metric == self._metric and cidr in keep:
                continue
            if route.proto == self.protocol or self._grace_over(iface, now):
                ops.append(_Op(_Kind.ROUTE_DEL, iface, cidr, metric, route.proto))
            elif self.remove_external_routes:
                waiting = True
        if self._static_neigh:
            self._plan_neighs(iface, up, keep, ops)
        return waiting

    def _plan_neighs(
        self, iface: str, up: bool, keep: dict[str, RouteTarget], ops: list[_Op]
    ) -> None:
        have = self._view.neighs.get(iface, {})
        suffix = f"/{self._host_len}"
        wanted = {t.cidr: t.mac for t in keep.values() if t.mac and t.cidr.endswith(suffix)}
        for cidr, mac in wanted.items():
            if up and have.get(cidr.removesuffix(suffix)) != mac:
                ops.append(_Op(_Kind.NEIGH_REPLACE, iface, cidr, mac=mac))
        for addr in have:
            if addr + suffix not in wanted:
                ops.append(_Op(_Kind.NEIGH_DEL, iface, addr + suffix))

    def _grace_over(self, iface: str, now: float) -> bool:
        if not self.remove_external_routes:
            return False
        return now - self._first_seen.get(iface, now) >= self.grace_period

    def _execute(self, ops: list[_Op]) -> None:
        done = self._try_netlink(ops) if len(ops) <= _NETLINK_MAX_OPS else 0
        if done < len(ops):
            self._run_batch(ops[done:])

    def _try_netlink(self, ops: list[_Op]) -> int:
        """A few changes go straight over netlink (~0.6 ms each, no `ip` process to start).
        Returns how many succeeded; the caller sends the rest through the batch."""
        for done, op in enumerate(ops):
            index = self._index.get(op.iface)
            if index is None or (op.via and op.kind is _Kind.ROUTE_REPLACE):
                return done  # gateway and blackhole routes go through the batch
            try:
                if self._netlink is None:
                    self._netlink = self._netlink_factory()
                self._netlink_op(self._netlink, index, op)
            except Exception as exc:  # pyroute2's NetlinkError is not an OSError
                _log.warning("netlink %s failed (%s); falling back to ip -batch", op, exc)
                self.close()
                return done
            self._view.record(op, self._metric)
        return len(ops)

    def _netlink_op(self, nl: RouteNetlink, index: int, op: _Op) -> None:
        common: dict[str, Any] = {"family": _FAMILY[self.ip_version], "dst": op.addr}
        if op.kind is _Kind.NEIGH_REPLACE:
            nl.neigh("replace", ifindex=index, lladdr=op.mac, state=_NUD_PERMANENT, **common)
        elif op.kind is _Kind.NEIGH_DEL:
            nl.neigh("del", ifindex=index, **common)
        else:
            common.update(dst_len=int(op.cidr.partition("/")[2]), oif=index, table=self.table)
            if op.kind is _Kind.ROUTE_REPLACE:
                nl.route("replace", scope=_SCOPE_LINK, proto=op.proto, **common)
            else:
                # Without a scope pyroute2 sends "universe", which no link-scope route
                # matches (ESRCH): ask for any scope, as iproute2 does.
                nl.route("del", proto=op.proto, priority=op.metric, scope=_SCOPE_NOWHERE, **common)

    def _run_batch(self, ops: list[_Op]) -> None:
        """Everything else in one `ip -force -batch` (10k routes ~0.13 s)."""
        script = "".join(_batch_line(op, self.table) for op in ops)
        self._runner.run(["ip", f"-{self.ip_version}", "-force", "-batch", "-"], stdin=script)
        for op in ops:
            self._view.record(op, self._metric)
