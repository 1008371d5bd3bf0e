"""VXLANManager's decisions (no kernel: drivers are only given desired state here; the
kernel tests in tests/kernel/test_vxlan_kernel.py prove what they write)."""

from __future__ import annotations

import logging

import pytest

from calico.calc.messages import (
    RouteType,
    RouteUpdate,
    VTEPRemove,
    VTEPUpdate,
)
from calico.dataplane.drivers.ipsets import IPSets
from calico.dataplane.drivers.routetable import BLACKHOLE, RouteNetlink, RouteTable
from calico.dataplane.drivers.vxlan import VXLANDevice
from calico.dataplane.managers.vxlan import VXLANManager, VXLANSettings
from calico.model.vxlan import device_name, vtep_mac
from calico.rules import naming
from calico.rules.config import RulesConfig
from calico.testing.dataplane import NoCommands, RecordingTable

CFG = RulesConfig()


def vtep(node: str, version: int = 4) -> VTEPUpdate:
    i = {"a": 1, "b": 2}[node]
    addr, parent = (
        (f"198.19.{i}.1", f"198.18.0.{i}")
        if version == 4
        else (
            f"2001:db8:{i}::1",
            f"2001:db8:ff::{i}",
        )
    )
    return VTEPUpdate(node, version, addr, vtep_mac(node, version), parent)


def no_netlink() -> RouteNetlink:
    raise AssertionError("no kernel here")


def manager(
    enabled: bool | None = None,
) -> tuple[VXLANManager, list[RecordingTable], dict[int, IPSets]]:
    runner = NoCommands()
    tables = [RecordingTable("filter", v) for v in (4, 6)]
    ipsets = {v: IPSets(v, runner) for v in (4, 6)}
    mgr = VXLANManager(
        "a",
        CFG,
        VXLANSettings(enabled=enabled),
        tables,
        ipsets.values(),
        {v: VXLANDevice(runner, v) for v in (4, 6)},
        {v: RouteTable(runner, no_netlink, v, (device_name(v), BLACKHOLE)) for v in (4, 6)},
    )
    return mgr, tables, ipsets


def vxlan_rules(table: RecordingTable) -> int:
    chain = table.chains[naming.CHAIN_INPUT]
    return sum("all-vxlan-net" in r.spec() for r in chain.rules)


@pytest.mark.parametrize("enabled", [None, True])
def test_in_use_per_family_while_this_host_has_a_vtep(enabled: bool | None) -> None:
    mgr, (v4, v6), ipsets = manager(enabled)
    for msg in (vtep("a"), vtep("b"), vtep("b", 6)):
        mgr.on_update(msg)
    mgr.complete_deferred_work()
    assert (mgr.in_use(4), mgr.in_use(6)) == (True, False)  # no v6 VTEP of its own
    assert (vxlan_rules(v4), vxlan_rules(v6)) == (1, 0)
    assert naming.IPSET_ID_ALL_VXLAN_NET in ipsets[4].desired_ids()
    assert naming.IPSET_ID_ALL_VXLAN_NET not in ipsets[6].desired_ids()
    mgr.on_update(VTEPRemove("a", 4))
    mgr.complete_deferred_work()
    assert not mgr.in_use(4) and vxlan_rules(v4) == 0
    assert naming.IPSET_ID_ALL_VXLAN_NET not in ipsets[4].desired_ids()


def test_disabled_programs_nothing_and_logs_one_error(caplog: pytest.LogCaptureFixture) -> None:
    mgr, (v4, _), _ = manager(enabled=False)
    caplog.set_level(logging.ERROR)
    mgr.on_update(vtep("a"))
    mgr.on_update(RouteUpdate("198.19.2.0/26", "b", RouteType.VXLAN, "198.19.2.1"))
    mgr.complete_deferred_work()
    mgr.on_update(vtep("b"))
    mgr.complete_deferred_work()
    assert not mgr.in_use(4) and vxlan_rules(v4) == 0
    assert caplog.text.count("vxlanEnabled is false") == 1


def test_nothing_is_rendered_again_until_something_changes() -> None:
    mgr, tables, _ = manager()
    mgr.complete_deferred_work()
    updates = tables[0].updates
    mgr.complete_deferred_work()
    assert tables[0].updates == updates
    mgr.on_update(vtep("b"))
    mgr.complete_deferred_work()
    assert tables[0].updates > updates
