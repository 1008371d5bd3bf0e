"""EndpointManager: host endpoints resolve only to interfaces that exist (as Felix)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from calico.calc.messages import (
    HostEndpoint,
    HostEndpointID,
    HostEndpointRemove,
    HostEndpointUpdate,
    Message,
    PolicyID,
    TierInfo,
    WorkloadEndpoint,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.dataplane.drivers.iptables_table import IptablesTable
from calico.dataplane.drivers.links import LinkConfigurator, SysctlCommands
from calico.dataplane.drivers.routetable import RouteTable
from calico.dataplane.managers.endpoints import EndpointManager
from calico.rules import naming
from calico.rules.config import RulesConfig
from calico.testing.dataplane import NoCommands


def manager() -> tuple[EndpointManager, IptablesTable, list[tuple[object, str | None]]]:
    runner = NoCommands()
    tables = [IptablesTable(t, 4, runner, backend="nft") for t in ("filter", "raw", "mangle")]
    routes = {4: RouteTable(runner, lambda: None, 4)}  # type: ignore[arg-type,return-value]
    statuses: list[tuple[object, str | None]] = []
    cfg = RulesConfig(ipv6_enabled=False)
    mgr = EndpointManager(
        cfg,
        tables,
        routes,
        LinkConfigurator(SysctlCommands(runner), ipv6=False),
        lambda i, _ep, s: statuses.append((i, s)),
    )
    return mgr, tables[0], statuses


def hep(iface: str | None, *ips: str) -> HostEndpoint:
    return HostEndpoint(iface, ips, (), (), ())


def test_named_host_endpoint_resolves_only_once_its_interface_exists() -> None:
    mgr, filter_table, statuses = manager()
    hep_id = HostEndpointID("uplink")
    mgr.on_update(HostEndpointUpdate(hep_id, hep("eth9")))
    mgr.complete_deferred_work()
    assert "cali-fh-eth9" not in filter_table.chain_names()
    assert statuses[-1] == (hep_id, "down")
    mgr.on_iface_state("eth9", True, 7)
    mgr.complete_deferred_work()
    assert "cali-fh-eth9" in filter_table.chain_names()
    assert statuses[-1] == (hep_id, "up")
    mgr.on_iface_state("eth9", False, 0)  # deleted
    mgr.complete_deferred_work()
    assert "cali-fh-eth9" not in filter_table.chain_names()
    assert statuses[-1] == (hep_id, "down")


def test_expected_ip_and_wildcard_host_endpoints() -> None:
    mgr, filter_table, _ = manager()
    mgr.on_update(HostEndpointUpdate(HostEndpointID("by-ip"), hep(None, "198.18.0.1")))
    mgr.on_update(HostEndpointUpdate(HostEndpointID("all"), hep("*")))
    mgr.on_iface_state("eth1", True, 3)
    mgr.on_iface_addrs("eth1", {"198.18.0.1"})
    mgr.complete_deferred_work()
    chains = filter_table.chain_names()
    assert "cali-fh-eth1" in chains and "cali-fh-any-interface-at-all" in chains


def test_deleted_host_endpoint_status_is_removed() -> None:
    mgr, _, statuses = manager()
    hep_id = HostEndpointID("uplink")
    mgr.on_iface_state("eth1", True, 3)
    mgr.on_update(HostEndpointUpdate(hep_id, hep("eth1")))
    mgr.complete_deferred_work()
    assert statuses[-1] == (hep_id, "up")
    mgr.on_update(HostEndpointRemove(hep_id))
    mgr.complete_deferred_work()
    assert statuses[-1] == (hep_id, None)


def chains(table: IptablesTable) -> dict[str, object]:
    return {name: desired.chain for name, desired in table._chains.items()}


def replayed_and_fresh(
    steps: Iterable[tuple[int, WorkloadEndpoint | None, bool]],
) -> tuple[EndpointManager, EndpointManager]:
    """A manager fed `steps` (endpoint number, its endpoint or None for removed, complete
    deferred work after it) and one fed only each endpoint's last message."""
    mgr, _, _ = manager()
    final: dict[WorkloadEndpointID, Message] = {}
    for ep, wep, flush in steps:
        ep_id = WorkloadEndpointID("ns", f"ep{ep}")
        msg: Message = (
            WorkloadEndpointRemove(ep_id) if wep is None else WorkloadEndpointUpdate(ep_id, wep)
        )
        mgr.on_update(msg)
        final[ep_id] = msg
        if flush:
            mgr.complete_deferred_work()
    mgr.complete_deferred_work()
    fresh, _, _ = manager()
    for msg in final.values():
        fresh.on_update(msg)
    fresh.complete_deferred_work()
    return mgr, fresh


WEP_OPS = st.lists(
    st.tuples(
        st.integers(0, 40),  # endpoint
        st.one_of(st.none(), st.integers(0, 2)),  # its interface (None: removed)
        st.sampled_from([(), ("198.19.0.0/16",), ("198.19.0.0/16", "2001:db8::/64")]),
        st.booleans(),  # complete deferred work after this one
    ),
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(ops=WEP_OPS)
def test_dispatch_and_rpf_skip_rebuilt_only_when_needed_equal_a_fresh_build(
    ops: list[tuple[int, int | None, tuple[str, ...], bool]],
) -> None:
    """(Endpoints never share an interface here: the manager does not support that.)"""
    mgr, fresh = replayed_and_fresh(
        (ep, WorkloadEndpoint(f"cali{ep}x{iface}", None, (), (), (), (), (), (), spoofed)
         if iface is not None else None, flush)
        for ep, iface, spoofed, flush in ops
    )  # fmt: skip
    for ours, theirs in zip(mgr._tables.values(), fresh._tables.values(), strict=True):
        assert chains(ours) == chains(theirs)


def test_dispatch_is_rebuilt_only_when_interfaces_change(monkeypatch: Any) -> None:
    import calico.dataplane.managers.endpoints as endpoints

    built: list[list[str]] = []
    real = endpoints.workload_dispatch_chains
    monkeypatch.setattr(
        endpoints,
        "workload_dispatch_chains",
        lambda cfg, names, memo: built.append(names) or real(cfg, names, memo),
    )
    mgr, _, _ = manager()
    ep_id = WorkloadEndpointID("ns", "a")
    wep = WorkloadEndpoint("calia", None, ("198.18.0.1/32",), (), ("p",), ())
    mgr.on_update(WorkloadEndpointUpdate(ep_id, wep))
    mgr.complete_deferred_work()
    mgr.on_update(WorkloadEndpointUpdate(ep_id, WorkloadEndpoint("calia", None, (), (), (), ())))
    mgr.complete_deferred_work()  # same interface: no rebuild
    mgr.on_update(WorkloadEndpointRemove(ep_id))
    mgr.complete_deferred_work()
    assert built == [["calia"], []]


def test_resolved_interfaces_are_reported_when_they_change() -> None:
    runner = NoCommands()
    tables = [IptablesTable(t, 4, runner, backend="nft") for t in ("filter", "raw", "mangle")]
    routes = {4: RouteTable(runner, lambda: None, 4)}  # type: ignore[arg-type,return-value]
    reports: list[dict[str, str]] = []
    mgr = EndpointManager(
        RulesConfig(ipv6_enabled=False),
        tables,
        routes,
        LinkConfigurator(SysctlCommands(runner), ipv6=False),
        on_host_endpoints=lambda resolved: reports.append(dict(resolved)),
    )
    mgr.complete_deferred_work()
    assert reports == [{}]  # none yet: reported too, so "none" is known
    mgr.on_update(HostEndpointUpdate(HostEndpointID("by-ip"), hep(None, "198.18.0.1")))
    mgr.on_iface_state("eth1", True, 3)
    mgr.complete_deferred_work()
    assert reports[-1] == {}  # eth1 does not carry the address yet
    mgr.on_iface_addrs("eth1", {"198.18.0.1"})
    mgr.complete_deferred_work()
    assert reports[-1] == {"by-ip": "eth1"}
    mgr.on_iface_state("eth2", True, 4)  # re-resolves to the same: no new report
    mgr.complete_deferred_work()
    assert reports == [{}, {"by-ip": "eth1"}]


def test_a_policy_group_chain_goes_with_the_last_workload_jumping_to_it() -> None:
    mgr, filter_table, _ = manager()
    a, b = PolicyID("default", "a"), PolicyID("default", "b")
    grouped = (TierInfo("default", ingress_policies=(a, b), ingress_selections=("s:x", "s:x")),)
    group = naming.policy_group_chain_name("default", "s:x", inbound=True)

    def workload(name: str, tiers: tuple[TierInfo, ...]) -> WorkloadEndpointUpdate:
        ep = WorkloadEndpoint(f"cali{name}", None, (), (), (), tiers)
        return WorkloadEndpointUpdate(WorkloadEndpointID("ns", name), ep)

    mgr.on_update(workload("1", grouped))
    mgr.on_update(workload("2", grouped))
    mgr.complete_deferred_work()
    assert group in filter_table.chain_names()
    mgr.on_update(workload("1", ()))  # no longer jumps to it
    mgr.on_update(WorkloadEndpointRemove(WorkloadEndpointID("ns", "3")))  # unknown: no effect
    mgr.complete_deferred_work()
    assert group in filter_table.chain_names()
    mgr.on_update(WorkloadEndpointRemove(WorkloadEndpointID("ns", "2")))
    mgr.complete_deferred_work()
    assert group not in filter_table.chain_names()
    assert not mgr._group_refs


ROUTED_OPS = st.lists(
    st.tuples(
        st.integers(0, 1),  # endpoint
        st.one_of(st.none(), st.integers(0, 1)),  # its interface (None: removed)
        st.sampled_from([(), ("198.18.0.1/32",), ("198.18.0.2/32",)]),  # its addresses
        st.sampled_from([None, "ee:ee:ee:ee:ee:01"]),  # its MAC
        st.sampled_from([(), ("198.19.0.0/16",)]),  # its allowed spoofed prefixes
        st.sampled_from([(), (TierInfo("default", ingress_policies=(PolicyID("default", "a"),)),)]),
        st.booleans(),  # complete deferred work after this one
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(ops=ROUTED_OPS)
@example(ops=[(0, 0, (), None, (), (), True), (0, 0, ("198.18.0.1/32",), None, (), (), True)])
def test_routes_and_sysctls_after_any_updates_equal_a_fresh_build(
    ops: list[tuple[int, int | None, tuple[str, ...], str | None, tuple[str, ...], Any, bool]],
) -> None:
    """Updates that change only policies skip the routes and sysctls: what the drivers
    are left holding must still be what the last messages alone give."""
    mgr, fresh = replayed_and_fresh(
        (ep, WorkloadEndpoint(f"cali{ep}x{iface}", mac, nets, (), (), tiers, (), (), spoofed)
         if iface is not None else None, flush)
        for ep, iface, nets, mac, spoofed, tiers, flush in ops
    )  # fmt: skip
    assert mgr._routes[4]._desired == fresh._routes[4]._desired
    assert mgr._links._desired == fresh._links._desired
    for ours, theirs in zip(mgr._tables.values(), fresh._tables.values(), strict=True):
        assert chains(ours) == chains(theirs)
