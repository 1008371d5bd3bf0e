"""Calico-style state sequences: the graph is driven from one datastore state to the next
(forwards, backwards, every state to every other, batched and one update at a time) and
after each step the dataplane it has built must equal the one a fresh graph builds from
that state alone. Every node's incremental bookkeeping (label inheritance, local endpoints,
active rules and their refcounts, tiers, IP set references, sent state) is on the path."""

from __future__ import annotations

import itertools

import pytest

from calico.calc import messages as m
from calico.calc.graph import CalcGraph
from calico.model.base import Resource
from calico.model.keys import ResourceKey, key_of
from calico.model.sync import SyncStatus

from .dataplane_model import ModelDataplane
from .test_calc_graph import HOST, Harness, gnp, res, wep

WEB = wep("web", "198.19.0.1/32", profiles=("kns.shop", "labels"), app="web")
DB = wep("db", "198.19.0.2/32", profiles=("kns.shop",), role="db",
         ports=[{"name": "pg", "protocol": "TCP", "port": 5432}])  # fmt: skip
DB_ELSEWHERE = wep("db", "198.19.0.2/32", node="host-2", profiles=("kns.shop",), role="db")
REMOTE = wep("remote", "198.19.1.1/32", node="host-2", profiles=("kns.shop",), app="web")
NS = res("Profile", "kns.shop", {"labelsToApply": {"team": "blue"}})
LABELS = res("Profile", "labels", {"labelsToApply": {"role": "db", "app": "ignored"}})
NETSET = res("NetworkSet", "office", {"nets": ["198.18.10.0/24"]}, ns="shop", app="web")
ALLOW_DB = gnp("allow-db", {
    "selector": "role == 'db'",
    "ingress": [{"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'web'"},
                 "destination": {"ports": ["pg"]}}],
})  # fmt: skip
ALLOW_DB_SECURITY = gnp("security.allow-db", {
    "tier": "security", "selector": "team == 'blue'", "order": 5,
    "egress": [{"action": "Deny", "destination": {"nets": ["198.18.20.0/24"]}}],
})  # fmt: skip
SECURITY = res("Tier", "security", {"order": 10, "defaultAction": "Pass"})
HEP = res("HostEndpoint", "uplink", {"node": "host-1", "interfaceName": "eth0",
                                     "expectedIPs": ["198.18.1.1"]}, role="db")  # fmt: skip
PRE_DNAT = gnp("pre", {
    "selector": "has(role)", "preDNAT": True, "applyOnForward": True, "types": ["Ingress"],
    "ingress": [{"action": "Deny", "source": {"selector": "app == 'web'"}}],
})  # fmt: skip
POOL = res("IPPool", "pool", {"cidr": "198.19.0.0/16", "natOutgoing": True})

STATES: list[list[Resource]] = [
    [],
    [WEB, DB, ALLOW_DB],  # WEB's labels come from its own and both profiles'
    [WEB, DB, ALLOW_DB, NS, LABELS, NETSET],  # profiles change who matches
    [WEB, DB_ELSEWHERE, REMOTE, NS, ALLOW_DB, ALLOW_DB_SECURITY],  # DB leaves this host
    [WEB, DB, NS, ALLOW_DB_SECURITY, SECURITY, HEP, PRE_DNAT, POOL],  # tiers, host endpoint
    [DB, HEP, LABELS, PRE_DNAT, POOL, NETSET],  # DB names a missing profile: drop-all
]


class ReplacingDataplane(ModelDataplane):
    """A full IP set update replaces the set, as the dataplane's IP set manager does: a set
    that one rule releases and another takes up in the same flush is rebuilt whole."""

    def apply(self, msg: m.Message) -> None:
        if isinstance(msg, m.IPSetUpdate):
            self.ipsets.pop(msg.id, None)
        super().apply(msg)


def harness() -> Harness:
    h = Harness()
    h.dp = ReplacingDataplane()
    h.graph = CalcGraph(HOST, h.dp)
    h.graph.on_status(SyncStatus.IN_SYNC)
    return h


def dataplane(h: Harness) -> tuple[object, ...]:
    dp = h.dp
    return (dp.ipsets, dp.policies, dp.profiles, dp.weps, dp.heps, dp.pools)


def fresh(state: list[Resource]) -> tuple[object, ...]:
    h = harness()
    h.put(*state)
    return dataplane(h)


def step(h: Harness, current: list[Resource], target: list[Resource], one_by_one: bool) -> None:
    wanted: dict[ResourceKey, Resource] = {key_of(r): r for r in target}
    updates: list[tuple[ResourceKey, Resource | None]] = [
        (key_of(r), None) for r in current if key_of(r) not in wanted
    ]
    updates += [(k, r) for k, r in wanted.items() if r not in current]
    if one_by_one:
        for update in updates:
            h.graph.on_updates([update])
    else:
        h.graph.on_updates(updates)
    assert dataplane(h) == fresh(target)
    h.assert_no_leaks()


def test_states_differ_so_the_sequences_test_something() -> None:
    assert len({repr(fresh(state)) for state in STATES}) == len(STATES)


@pytest.mark.parametrize("one_by_one", [False, True])
@pytest.mark.parametrize("order", ["forwards", "backwards"])
def test_state_sequence(order: str, one_by_one: bool) -> None:
    states = STATES if order == "forwards" else STATES[::-1]
    h = harness()
    current: list[Resource] = []
    for state in [*states, []]:
        step(h, current, state, one_by_one)
        current = state


@pytest.mark.parametrize("one_by_one", [False, True])
def test_every_state_to_every_other(one_by_one: bool) -> None:
    for a, b in itertools.permutations(range(len(STATES)), 2):
        h = harness()
        step(h, [], STATES[a], one_by_one)
        step(h, STATES[a], STATES[b], one_by_one)
