"""IPSets driver and IPSetsManager against an in-memory `ipset`."""

from __future__ import annotations

import ipaddress
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calc.messages import IPSetDeltaUpdate, IPSetRemove, IPSetType, IPSetUpdate
from calico.dataplane.drivers.ipsets import (
    IPSets,
    IPSetWriter,
    canonical_member,
    member_version,
    parse_ipset_save,
)
from calico.dataplane.managers.ipsets import IPSetsManager
from calico.programs import CommandFailed
from calico.testing.dataplane import FakeIPSet, FakeSet


@pytest.fixture
def kernel() -> FakeIPSet:
    kernel = FakeIPSet()
    kernel.sets["foreign"] = FakeSet("hash:ip", "inet", {"203.0.113.1"})
    return kernel


def test_members_are_canonical_and_per_family(kernel: FakeIPSet) -> None:
    v4, v6 = IPSets(4, kernel), IPSets(6, kernel)
    for driver in (v4, v6):
        driver.set_members(
            "s:a", IPSetType.NET, ["198.18.0.1/32", "198.18.1.7/24", "2001:DB8::1/128"]
        )
        driver.set_members("n:b", IPSetType.IP_PORT, ["198.18.0.1,TCP:80", "2001:db8:0::2,udp:53"])
        driver.apply_updates()
    assert kernel.sets["cali40s:a"] == FakeSet("hash:net", "inet", {"198.18.0.1", "198.18.1.0/24"})
    assert kernel.sets["cali60s:a"] == FakeSet("hash:net", "inet6", {"2001:db8::1"})
    assert kernel.sets["cali40n:b"].members == {"198.18.0.1,tcp:80"}
    assert kernel.sets["cali60n:b"] == FakeSet("hash:ip,port", "inet6", {"2001:db8::2,udp:53"})
    assert len(kernel.restores) == 2
    assert kernel.sets["foreign"].members == {"203.0.113.1"}
    assert kernel.calls.count(["ipset", "save"]) == 2  # one read per driver, none per set


def test_small_changes_are_deltas_large_ones_swap(kernel: FakeIPSet) -> None:
    ipsets = IPSets(4, kernel)
    ipsets.set_members("s:a", IPSetType.NET, [f"198.18.0.{n}" for n in range(10)])
    ipsets.apply_updates()
    ipsets.add_members("s:a", ["198.18.1.1"])
    ipsets.remove_members("s:a", ["198.18.0.0"])
    ipsets.apply_updates()
    assert kernel.restores[-1] == ["del cali40s:a 198.18.0.0", "add cali40s:a 198.18.1.1"]
    ipsets.set_members("s:a", IPSetType.NET, ["198.18.9.9"])
    ipsets.apply_updates()
    assert kernel.restores[-1] == [
        "create cali4ts:a hash:net family inet maxelem 1048576",
        "add cali4ts:a 198.18.9.9",
        "swap cali4ts:a cali40s:a",
        "destroy cali4ts:a",
    ]
    assert set(kernel.sets) == {"foreign", "cali40s:a"}
    assert kernel.sets["cali40s:a"].members == {"198.18.9.9"}
    ipsets.apply_updates()
    assert len(kernel.restores) == 3  # nothing pending, nothing written


def test_sets_are_destroyed_only_by_apply_deletions(kernel: FakeIPSet) -> None:
    ipsets = IPSets(4, kernel)
    ipsets.set_members("s:a", IPSetType.NET, ["198.18.0.1"])
    ipsets.apply_updates()
    ipsets.remove("s:a")
    ipsets.apply_updates()
    assert "cali40s:a" in kernel.sets
    kernel.in_use.add("cali40s:a")
    with pytest.raises(CommandFailed):
        ipsets.apply_deletions()
    kernel.in_use.clear()
    ipsets.apply_deletions()
    assert set(kernel.sets) == {"foreign"}


def test_resync_repairs_drift_and_sweeps_leftovers(kernel: FakeIPSet) -> None:
    kernel.sets["cali4ts:old"] = FakeSet("hash:net", "inet", {"198.18.5.5"})  # crash leftover
    kernel.sets["cali40s:gone"] = FakeSet("hash:net", "inet")
    kernel.sets["cali60s:a"] = FakeSet("hash:net", "inet6")  # the IPv6 driver's business
    ipsets = IPSets(4, kernel)
    ipsets.set_members("s:a", IPSetType.NET, ["198.18.0.1", "198.18.0.2"])
    ipsets.apply_updates()
    kernel.sets["cali40s:a"].members = {"198.18.0.1", "198.18.0.99"}
    ipsets.set_members("s:b", IPSetType.NET, ["198.18.0.3"])  # due a write anyway: not drift
    ipsets.resync()
    assert ipsets.dirty
    ipsets.apply_updates()
    assert kernel.restores[-1][:2] == ["del cali40s:a 198.18.0.99", "add cali40s:a 198.18.0.2"]
    assert ipsets.drift_repaired == 1
    ipsets.resync()
    ipsets.apply_updates()
    assert ipsets.drift_repaired == 1  # a refresh that finds nothing adds nothing
    ipsets.apply_deletions()
    assert set(kernel.sets) == {"foreign", "cali40s:a", "cali40s:b", "cali60s:a"}


def test_type_change_recreates_the_set(kernel: FakeIPSet) -> None:
    kernel.sets["cali40n:x"] = FakeSet("hash:net", "inet", {"198.18.0.1"})
    ipsets = IPSets(4, kernel)
    ipsets.set_members("n:x", IPSetType.IP_PORT, ["198.18.0.1,tcp:80"])
    ipsets.apply_updates()
    assert kernel.sets["cali40n:x"] == FakeSet("hash:ip,port", "inet", {"198.18.0.1,tcp:80"})


def test_failure_forces_a_fresh_read(kernel: FakeIPSet) -> None:
    ipsets = IPSets(4, kernel)
    ipsets.set_members("s:a", IPSetType.NET, ["198.18.0.1"])
    ipsets.apply_updates()
    kernel.in_use.add("cali4ts:a")
    kernel.sets["cali4ts:a"] = FakeSet("hash:net", "inet")
    ipsets.resync()
    ipsets.set_members("s:a", IPSetType.NET, ["198.18.0.2", "198.18.0.3", "198.18.0.4"])
    with pytest.raises(CommandFailed):
        ipsets.apply_updates()  # must destroy the stuck temp set first
    assert ipsets.dirty
    kernel.in_use.clear()
    ipsets.apply_updates()
    assert kernel.sets["cali40s:a"].members == {"198.18.0.2", "198.18.0.3", "198.18.0.4"}


def test_canonical_member_and_save_parsing() -> None:
    assert canonical_member(IPSetType.NET, "10.0.0.5/8") == (4, "10.0.0.0/8")
    assert canonical_member(IPSetType.NET, "2001:db8::1") == (6, "2001:db8::1")
    assert canonical_member(IPSetType.IP_PORT, "2001:db8::1,SCTP:9") == (6, "2001:db8::1,sctp:9")
    assert canonical_member(IPSetType.NET, "bogus") is None
    sets = parse_ipset_save(
        "create cali60s:a hash:net family inet6 hashsize 1024 maxelem 1048576\n"
        "add cali60s:a 2001:db8::1\n"
    )
    assert sets["cali60s:a"].family == "inet6" and sets["cali60s:a"].members == {"2001:db8::1"}


def test_manager_fans_messages_out_to_both_families(kernel: FakeIPSet) -> None:
    v4, v6 = IPSets(4, kernel), IPSets(6, kernel)
    manager = IPSetsManager([v4, v6])
    members = frozenset({"198.18.0.1/32", "2001:db8::1/128"})
    manager.on_update(IPSetUpdate("s:a", IPSetType.NET, members))
    manager.on_update(IPSetUpdate("s:b", IPSetType.NET, frozenset()))
    manager.on_update(
        IPSetDeltaUpdate("s:a", frozenset({"198.18.0.2/32"}), frozenset({"2001:db8::1/128"}))
    )
    manager.on_update(IPSetRemove("s:b"))
    manager.complete_deferred_work()
    assert not kernel.restores  # no I/O until the loop applies
    for driver in (v4, v6):
        driver.apply_updates()
        driver.apply_deletions()
    assert kernel.sets["cali40s:a"].members == {"198.18.0.1", "198.18.0.2"}
    assert kernel.sets["cali60s:a"].members == set()
    assert "cali40s:b" not in kernel.sets


def test_writer_reads_once_and_restores_once_per_phase_for_both_families(
    kernel: FakeIPSet,
) -> None:
    kernel.sets["cali60s:gone"] = FakeSet("hash:net", "inet6")
    v4, v6 = IPSets(4, kernel), IPSets(6, kernel)
    writer = IPSetWriter(kernel, [v4, v6])
    for driver in (v4, v6):
        driver.set_members("s:a", IPSetType.NET, ["198.18.0.1/32", "2001:db8::1/128"])
    writer.apply_updates()
    writer.apply_deletions()
    assert kernel.calls.count(["ipset", "save"]) == 1
    assert kernel.restores == [
        [
            "create cali40s:a hash:net family inet maxelem 1048576",
            "add cali40s:a 198.18.0.1",
            "create cali60s:a hash:net family inet6 maxelem 1048576",
            "add cali60s:a 2001:db8::1",
        ],
        ["destroy cali60s:gone"],
    ]
    v4.resync()
    v6.resync()
    writer.apply_updates()  # nothing drifted: one read, no write
    assert kernel.calls.count(["ipset", "save"]) == 2 and len(kernel.restores) == 2


def test_writer_failure_makes_every_family_reread(kernel: FakeIPSet) -> None:
    v4, v6 = IPSets(4, kernel), IPSets(6, kernel)
    writer = IPSetWriter(kernel, [v4, v6])
    v4.set_members("s:a", IPSetType.NET, ["198.18.0.1"])
    v6.set_members("s:a", IPSetType.NET, ["2001:db8::1"])
    writer.apply_updates()
    kernel.sets["cali60s:old"] = FakeSet("hash:net", "inet6")
    kernel.in_use.add("cali60s:old")
    v6.resync()
    with pytest.raises(CommandFailed):
        writer.apply_deletions()
    assert v4.dirty and v6.dirty
    kernel.in_use.clear()
    writer.apply_deletions()
    assert set(kernel.sets) == {"foreign", "cali40s:a", "cali60s:a"}


def test_members_of_the_other_family_are_not_parsed_malformed_ones_warned_once(
    kernel: FakeIPSet, caplog: pytest.LogCaptureFixture
) -> None:
    assert member_version(IPSetType.NET, "2001:db8::/64") == 6
    assert member_version(IPSetType.IP_PORT, "198.18.0.1,tcp:80") == 4
    caplog.set_level(logging.WARNING)
    for driver in (IPSets(4, kernel), IPSets(6, kernel)):
        driver.set_members("s:a", IPSetType.NET, ["bogus", "198.18.0.1"])
    assert [r.getMessage() for r in caplog.records] == [
        "ignoring malformed hash:net member 'bogus'"
    ]


def _reference_canonical(set_type: IPSetType, member: str) -> tuple[int, str] | None:
    """canonical_member as it was, all through ipaddress: the fast path must agree with it."""
    try:
        if set_type is IPSetType.IP_PORT:
            addr_text, proto_port = member.rsplit(",", 1)
            proto, port = proto_port.split(":")
            addr = ipaddress.ip_address(addr_text)
            return addr.version, f"{addr},{proto.lower()}:{int(port)}"
        net = ipaddress.ip_network(member, strict=False)
    except ValueError:
        return None
    text = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
    return net.version, text


_ADDRESSES = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded),
    st.sampled_from(["::ffff:1.2.3.4", "::1.2.3.4", "fe80::1%eth0", "010.0.0.1", "1.2.3", "x"]),
)
_SUFFIXES = st.sampled_from(["", "/32", "/128", "/24", "/64", "/032", "/0", "/33", "/x", "/32/1"])


@settings(max_examples=400, deadline=None)
@given(address=_ADDRESSES, suffix=_SUFFIXES, port=st.sampled_from([",tcp:80", ",UDP:053", ":1"]))
def test_canonical_member_agrees_with_ipaddress(address: str, suffix: str, port: str) -> None:
    net = address + suffix
    assert canonical_member(IPSetType.NET, net) == _reference_canonical(IPSetType.NET, net)
    ip_port = address + port
    assert canonical_member(IPSetType.IP_PORT, ip_port) == _reference_canonical(
        IPSetType.IP_PORT, ip_port
    )
    for set_type, member in ((IPSetType.NET, net), (IPSetType.IP_PORT, ip_port)):
        parsed = canonical_member(set_type, member)  # the cheap family split is right
        assert parsed is None or parsed[0] == member_version(set_type, member)
