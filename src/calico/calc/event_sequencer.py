"""Flushes the nodes' outputs as one batch in dependency order (Calico's EventSequencer).

Adds and updates first, in the order the dataplane needs them to exist: IP pools, IP sets
(full updates for new sets, then deltas), policies, profiles, endpoints. Then removals in
reverse: endpoints, profiles, policies, IP sets. Then VXLAN, ordered so that no route is
ever programmed without its VTEP: route removals, VTEP removals, VTEP updates, route
updates. IP pool removals last. So nothing is referenced before it is sent or after
it is removed. InSync goes out once, after the first complete batch.

The IP sets follow the rules actually sent: as policies' and profiles' sent rules change,
their IP set references move with them (before the sets' changes are taken).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from calico.calc.ipset_calc import IPSetCalculator
from calico.calc.items import ItemKey
from calico.calc.messages import (
    ActivePolicyRemove,
    ActivePolicyUpdate,
    ActiveProfileRemove,
    ActiveProfileUpdate,
    HostEndpointRemove,
    InSync,
    IPAMPool,
    IPAMPoolRemove,
    IPAMPoolUpdate,
    Message,
    ParsedPolicy,
    ParsedProfile,
    PolicyID,
    RouteRemove,
    VTEPRemove,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.calc.policy_resolver import EndpointUpdate
from calico.calc.rule_scanner import Specs
from calico.calc.sent_state import Change, SentState
from calico.calc.vxlan_resolver import VXLANResolver

Emit = Callable[[Sequence[Message]], None]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class EventSequencer:
    def __init__(
        self,
        emit: Emit,
        endpoints: SentState[ItemKey, EndpointUpdate],
        policies: SentState[PolicyID, tuple[ParsedPolicy, Specs]],
        profiles: SentState[str, tuple[ParsedProfile, Specs]],
        ipsets: IPSetCalculator,
        vxlan: VXLANResolver,
    ) -> None:
        self._emit = emit
        self._endpoints = endpoints
        self._policies = policies
        self._profiles = profiles
        self._ipsets = ipsets
        self._vxlan = vxlan
        self._pools: dict[str, IPAMPool] = {}
        self._sent_pools: SentState[str, IPAMPool] = SentState(self._pools.get, str)
        self._in_sync = False
        self._sent_in_sync = False

    def on_pool_update(self, name: str, pool: IPAMPool | None) -> None:
        """IP pools pass straight through (in Calico via its DataplanePassthru node)."""
        if pool is None:
            self._pools.pop(name, None)
        else:
            self._pools[name] = pool
        self._sent_pools.mark(name)

    def on_in_sync(self) -> None:
        self._in_sync = True

    @property
    def in_sync(self) -> bool:
        return self._in_sync

    def flush(self) -> None:
        endpoints = self._endpoints.changes()
        policies = self._policies.changes()
        profiles = self._profiles.changes()
        for pol in policies:
            self._ipsets.swap_references(_specs(pol.old), _specs(pol.new))
        for prof in profiles:
            self._ipsets.swap_references(_specs(prof.old), _specs(prof.new))
        ipset_new, ipset_deltas, ipset_removes = self._ipsets.take_changes()
        pools = self._sent_pools.changes()
        ep_updates, ep_removes = _split(endpoints, lambda _, ep: ep, _endpoint_remove)
        pol_updates, pol_removes = _split(
            policies,
            lambda pid, rules: ActivePolicyUpdate(pid, rules[0]),
            lambda pid, _: ActivePolicyRemove(pid),
        )
        prof_updates, prof_removes = _split(
            profiles,
            lambda name, rules: ActiveProfileUpdate(name, rules[0]),
            lambda name, _: ActiveProfileRemove(name),
        )
        pool_updates, pool_removes = _split(pools, IPAMPoolUpdate, lambda n, _: IPAMPoolRemove(n))
        out: list[Message] = [*pool_updates, *ipset_new, *ipset_deltas]
        out += [*pol_updates, *prof_updates, *ep_updates]
        out += [*ep_removes, *prof_removes, *pol_removes, *ipset_removes]
        out += self._vxlan_messages()
        out += pool_removes
        if self._in_sync and not self._sent_in_sync:
            self._sent_in_sync = True
            out.append(InSync())
        if out:
            self._emit(out)

    def _vxlan_messages(self) -> list[Message]:
        """Routes out, VTEPs out, VTEPs in, routes in. A route through a VTEP that changes
        or goes is withdrawn before it and sent again after: at no point in the stream does
        a route point at a VTEP the dataplane does not have (Calico withdraws them too)."""
        vteps = self._vxlan.vteps.changes()
        vtep_updates, vtep_removes = _split(vteps, lambda _, v: v, lambda k, _: VTEPRemove(*k))
        moving = {key for key, old, _ in vteps if old is not None}
        route_removes: list[Message] = []
        route_updates: list[Message] = []
        for dst, old, new in self._vxlan.routes.changes():
            if old is not None and (new is None or (old.node, dst.version) in moving):
                route_removes.append(RouteRemove(old.dst))
            if new is not None:
                route_updates.append(new)
        return [*route_removes, *vtep_removes, *vtep_updates, *route_updates]


def _split(
    changes: list[Change[K, V]],
    update: Callable[[K, V], Message],
    remove: Callable[[K, V], Message],
) -> tuple[list[Message], list[Message]]:
    updates: list[Message] = []
    removes: list[Message] = []
    for key, old, new in changes:
        if new is not None:
            updates.append(update(key, new))
        else:
            assert old is not None
            removes.append(remove(key, old))
    return updates, removes


def _specs(rules: tuple[object, Specs] | None) -> Specs:
    return rules[1] if rules is not None else {}


def _endpoint_remove(_: ItemKey, sent: EndpointUpdate) -> Message:
    if isinstance(sent, WorkloadEndpointUpdate):
        return WorkloadEndpointRemove(sent.id)
    return HostEndpointRemove(sent.id)
