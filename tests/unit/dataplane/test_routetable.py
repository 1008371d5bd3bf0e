"""RouteTable against a fake kernel that speaks the same `ip -j` / `ip -batch` / netlink
dialect as the real one; tests assert on the resulting kernel state, and on command counts
only where batching is the behaviour under test."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from calico.dataplane.drivers.conntrack import ConntrackCleaner, ConntrackFlows
from calico.dataplane.drivers.routetable import RTPROT_CALICO, RouteTable, RouteTarget
from calico.programs import CommandFailed, CommandResult
from calico.testing.dataplane import FakeKernel, FakeNetlink, FakeRoute
from calico.testing.waiting import wait_until

MAC1 = "ee:00:00:00:00:01"
MAC2 = "ee:00:00:00:00:02"


def make(kernel: FakeKernel, ip_version: int = 4, **kw: Any) -> RouteTable:
    return RouteTable(kernel, lambda: FakeNetlink(kernel), ip_version, **kw)


def targets(*cidrs: str, mac: str | None = None) -> list[RouteTarget]:
    return [RouteTarget(c, mac) for c in cidrs]


@pytest.fixture
def kernel() -> FakeKernel:
    k = FakeKernel()
    for name in ("eth0", "cali1", "cali2"):
        k.link(name)
    return k


def test_adds_routes_and_static_arp_entries(kernel: FakeKernel) -> None:
    rt = make(kernel)
    rt.set_routes("cali1", targets("198.18.0.1/32", mac="EE:00:00:00:00:01"))
    rt.set_routes("cali2", targets("198.18.0.2"))  # a bare address is a host route
    rt.apply()
    assert kernel.table() == {
        "198.18.0.1/32": ("cali1", RTPROT_CALICO),
        "198.18.0.2/32": ("cali2", RTPROT_CALICO),
    }
    assert kernel.neighs == {("198.18.0.1", "cali1"): MAC1}
    assert not rt.needs_apply


def test_replaces_a_changed_mac_and_moves_a_cidr_between_interfaces(kernel: FakeKernel) -> None:
    rt = make(kernel)
    rt.set_routes("cali1", targets("198.18.0.1/32", mac=MAC1))
    rt.apply()
    rt.set_routes("cali1", targets("198.18.0.1/32", mac=MAC2))
    rt.apply()
    assert kernel.neighs == {("198.18.0.1", "cali1"): MAC2}
    rt.remove_interface("cali1")
    rt.set_routes("cali2", targets("198.18.0.1/32", mac=MAC1))
    rt.apply()
    assert kernel.table() == {"198.18.0.1/32": ("cali2", RTPROT_CALICO)}
    assert kernel.neighs == {("198.18.0.1", "cali2"): MAC1}


def test_takes_over_a_route_in_the_wrong_shape(kernel: FakeKernel) -> None:
    kernel.add_route("198.18.0.1/32", "cali1", proto=3)  # e.g. written by a CNI plugin
    kernel.add_route("198.18.0.2/32", "cali2", gateway="198.18.9.9")
    rt = make(kernel)
    rt.set_routes("cali1", targets("198.18.0.1/32"))
    rt.set_routes("cali2", targets("198.18.0.2/32"))
    rt.apply()
    assert kernel.routes[("198.18.0.1/32", 0)] == FakeRoute("cali1")
    assert kernel.routes[("198.18.0.2/32", 0)] == FakeRoute("cali2")


def test_deletes_stale_owned_routes_and_never_touches_foreign_ones(kernel: FakeKernel) -> None:
    kernel.add_route("198.18.0.9/32", "cali1")  # ours, left over from before a restart
    kernel.add_route("198.18.0.8/32", "cali1", metric=100)  # ours, other metric
    kernel.add_route("198.18.0.7/32", "eth0")  # our protocol, not a workload interface
    kernel.add_route("198.18.5.0/24", "cali1", proto=2)  # the kernel's own
    kernel.neighs[("198.18.0.9", "cali1")] = MAC1
    kernel.neighs[("198.18.0.7", "eth0")] = MAC2
    rt = make(kernel)
    rt.apply()
    assert kernel.table() == {
        "198.18.0.7/32": ("eth0", RTPROT_CALICO),
        "198.18.5.0/24": ("cali1", 2),
    }
    assert kernel.neighs == {("198.18.0.7", "eth0"): MAC2}


def test_external_routes_on_workload_interfaces_go_after_the_grace_period(
    kernel: FakeKernel,
) -> None:
    now = [100.0]
    kernel.add_route("198.18.0.9/32", "cali1", proto=3)
    rt = make(kernel, grace_period=10.0, clock=lambda: now[0])
    rt.apply()
    assert "198.18.0.9/32" in kernel.table()
    assert rt.needs_apply  # the interface is re-checked until the grace period is over
    now[0] += 10.0
    rt.apply()
    assert kernel.table() == {}
    assert not rt.needs_apply


def test_external_routes_stay_when_removal_is_off(kernel: FakeKernel) -> None:
    now = [100.0]
    kernel.add_route("198.18.0.9/32", "cali1", proto=3)
    rt = make(kernel, remove_external_routes=False, clock=lambda: now[0])
    rt.apply()
    now[0] += 1000.0
    rt.resync()
    rt.apply()
    assert kernel.table() == {"198.18.0.9/32": ("cali1", 3)}
    assert not rt.needs_apply


def test_down_interfaces_are_skipped_until_they_come_up(kernel: FakeKernel) -> None:
    kernel.link("cali3", up=False)
    rt = make(kernel)
    rt.set_routes("cali3", targets("198.18.0.3/32", mac=MAC1))
    rt.set_routes("cali4", targets("198.18.0.4/32"))  # does not exist yet
    rt.apply()
    assert kernel.table() == {}
    kernel.link("cali3", up=True)
    rt.on_iface_state("cali3", True, kernel.links["cali3"][0])
    kernel.link("cali4")
    rt.on_iface_state("cali4", True, kernel.links["cali4"][0])
    rt.apply()
    assert set(kernel.table()) == {"198.18.0.3/32", "198.18.0.4/32"}
    assert kernel.neighs == {("198.18.0.3", "cali3"): MAC1}


def test_routes_come_back_when_an_interface_flaps_or_is_recreated(kernel: FakeKernel) -> None:
    rt = make(kernel)
    rt.set_routes("cali1", targets("198.18.0.1/32"))
    rt.apply()
    index = kernel.links["cali1"][0]
    rt.on_iface_state("cali1", False, index)
    kernel.routes.clear()  # the kernel flushes routes of a downed device
    rt.apply()
    assert kernel.table() == {}
    rt.on_iface_state("cali1", True, index)
    rt.apply()
    assert kernel.table() == {"198.18.0.1/32": ("cali1", RTPROT_CALICO)}
    rt.on_iface_state("cali1", False, 0)  # deleted, then a new cali1 appears
    kernel.routes.clear()
    rt.on_iface_state("cali1", True, index + 10)
    kernel.links["cali1"] = (index + 10, True)
    rt.apply()
    assert kernel.table() == {"198.18.0.1/32": ("cali1", RTPROT_CALICO)}


def test_a_restarted_table_recognises_its_routes_and_changes_nothing(kernel: FakeKernel) -> None:
    first = make(kernel)
    first.set_routes("cali1", targets("198.18.0.1/32", mac=MAC1))
    first.set_routes("cali2", targets(*(f"198.18.1.{i}/32" for i in range(1, 30))))
    first.apply()
    kernel.commands.clear()
    kernel.netlink_calls.clear()
    second = make(kernel)
    second.set_routes("cali1", targets("198.18.0.1/32", mac=MAC1))
    second.set_routes("cali2", targets(*(f"198.18.1.{i}/32" for i in range(1, 30))))
    second.apply()
    assert len(kernel.commands) == 1 and "-j" in kernel.commands[0]  # the read only
    assert kernel.netlink_calls == []


def test_many_changes_go_in_one_batch_and_few_over_netlink(kernel: FakeKernel) -> None:
    rt = make(kernel)
    rt.set_routes("cali1", targets(*(f"198.18.1.{i}/32" for i in range(1, 101))))
    rt.apply()
    assert len(kernel.writes) == 1 and kernel.netlink_calls == []
    rt.set_routes("cali2", targets("198.18.0.2/32", mac=MAC2))
    rt.apply()
    assert len(kernel.writes) == 1
    assert kernel.netlink_calls == ["open", "route replace", "neigh replace"]
    assert kernel.table()["198.18.0.2/32"] == ("cali2", RTPROT_CALICO)


def test_a_netlink_failure_falls_back_to_the_batch(kernel: FakeKernel) -> None:
    kernel.netlink_fails = True
    rt = make(kernel)
    rt.set_routes("cali1", targets("198.18.0.1/32"))
    rt.apply()
    assert kernel.table() == {"198.18.0.1/32": ("cali1", RTPROT_CALICO)}
    assert len(kernel.writes) == 1 and kernel.netlink_calls == ["open", "close"]


def test_a_failed_batch_raises_stays_dirty_and_is_retried(kernel: FakeKernel) -> None:
    rt = make(kernel)
    rt.set_routes("cali1", targets(*(f"198.18.1.{i}/32" for i in range(1, 11))))
    kernel.fail_lines_matching = "198.18.1.5/32"
    with pytest.raises(CommandFailed):
        rt.apply()
    assert rt.needs_apply and len(kernel.table()) == 9  # -force: the other lines went in
    kernel.fail_lines_matching = None
    kernel.commands.clear()
    rt.apply()
    assert len(kernel.table()) == 10 and not rt.needs_apply
    assert kernel.writes == []  # one route missing: it went over netlink after the re-read


def test_resync_repairs_tampering(kernel: FakeKernel) -> None:
    rt = make(kernel)
    rt.set_routes("cali1", targets("198.18.0.1/32", mac=MAC1))
    rt.apply()
    del kernel.routes[("198.18.0.1/32", 0)]
    kernel.neighs.clear()
    kernel.add_route("198.18.0.66/32", "cali1")
    rt.apply()  # nothing dirty: no read, no repair
    assert "198.18.0.1/32" not in kernel.table()
    rt.resync()
    rt.apply()
    assert kernel.table() == {"198.18.0.1/32": ("cali1", RTPROT_CALICO)}
    assert kernel.neighs == {("198.18.0.1", "cali1"): MAC1}


def test_a_cidr_claimed_twice_goes_to_one_interface_until_released(kernel: FakeKernel) -> None:
    rt = make(kernel)
    rt.set_routes("cali2", targets("198.18.0.1/32"))
    rt.set_routes("cali1", targets("198.18.0.1/32"))
    rt.apply()
    assert kernel.table() == {"198.18.0.1/32": ("cali1", RTPROT_CALICO)}
    rt.on_iface_state("cali1", False, kernel.links["cali1"][0])
    rt.apply()
    assert kernel.table() == {"198.18.0.1/32": ("cali2", RTPROT_CALICO)}
    rt.on_iface_state("cali1", True, kernel.links["cali1"][0])
    rt.remove_interface("cali1")
    rt.apply()
    assert kernel.table() == {"198.18.0.1/32": ("cali2", RTPROT_CALICO)}


def test_ipv6_goes_through_the_same_path_without_neighbour_entries(kernel: FakeKernel) -> None:
    kernel.add_route("2001:db8::9/128", "cali1")  # stale, ours
    kernel.add_route("fe80::/64", "cali1", metric=256, proto=2)
    rt = make(kernel, ip_version=6)
    rt.set_routes("cali1", targets("2001:DB8:0::1/128", mac=MAC1))
    rt.apply()
    assert kernel.table() == {
        "2001:db8::1/128": ("cali1", RTPROT_CALICO),
        "fe80::/64": ("cali1", 2),
    }
    assert kernel.neighs == {}
    assert ("2001:db8::1/128", 1024) in kernel.routes


@pytest.mark.parametrize(
    ("iface", "cidr"),
    [("cali1", "2001:db8::1/128"), ("eth0", "198.18.0.1/32"), ("cali1", "198.18.0.1/24")],
)
def test_rejects_targets_it_could_not_own(kernel: FakeKernel, iface: str, cidr: str) -> None:
    with pytest.raises(ValueError):
        make(kernel).set_routes(iface, targets(cidr))


# -- conntrack cleanup of released addresses ------------------------------------------------


@dataclass
class FakeConntrackTool:
    """The `conntrack --delete` runs, each with the route table as it was at that moment.
    A listing (`--dump`, for a batch of addresses) shows one flow from each of `flows`."""

    kernel: FakeKernel
    calls: list[tuple[str, str, str, dict[str, tuple[str, int]]]] = field(default_factory=list)
    stderr: str = "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n"
    returncode: int = 1
    gate: threading.Event = field(default_factory=threading.Event)  # clear: runs block
    flows: tuple[str, ...] = ("198.18.0.1", "198.18.0.2", "198.18.0.11", "2001:db8::2")
    dumps: int = 0

    def __post_init__(self) -> None:
        self.gate.set()

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        assert args[:2] == ["conntrack", "--family"]
        assert self.gate.wait(timeout=10)
        if args[3:] == ["--dump"]:
            self.dumps += 1
            out = "".join(f"udp 17 29 src={a} dst=198.18.9.9 src=198.18.9.9\n" for a in self.flows)
            return CommandResult(0, out, "")
        assert args[3] == "--delete" and not check
        self.calls.append((args[2], args[4], args[5], self.kernel.table()))
        return CommandResult(self.returncode, "", self.stderr)

    def addrs(self) -> list[str]:
        return [addr for _, direction, addr, _ in self.calls if direction == "--orig-src"]


@pytest.fixture
def tool(kernel: FakeKernel) -> FakeConntrackTool:
    return FakeConntrackTool(kernel)


@pytest.fixture
def cleaner(tool: FakeConntrackTool) -> Iterator[ConntrackCleaner]:
    cleaner = ConntrackCleaner(ConntrackFlows(tool), max_backoff=0.2)
    yield cleaner
    tool.gate.set()
    cleaner.close()


def test_a_removed_endpoint_loses_its_flows_after_its_route(
    kernel: FakeKernel, tool: FakeConntrackTool, cleaner: ConntrackCleaner
) -> None:
    rt = make(kernel, conntrack=cleaner)
    rt.set_routes("cali1", targets("198.18.0.1/32", "198.18.0.11/32"))
    rt.apply()
    assert tool.calls == []
    rt.remove_interface("cali1")
    rt.apply()
    cleaner.flush(["198.18.0.1", "198.18.0.11"])
    assert sorted((fam, d, a) for fam, d, a, _ in tool.calls) == [
        ("ipv4", "--orig-src", "198.18.0.1"),
        ("ipv4", "--orig-src", "198.18.0.11"),
        ("ipv4", "--reply-src", "198.18.0.1"),
        ("ipv4", "--reply-src", "198.18.0.11"),
    ]
    assert all(table == {} for *_, table in tool.calls)  # the routes went first


def test_an_apply_waits_only_for_the_flows_of_an_address_it_routes_again(
    kernel: FakeKernel, tool: FakeConntrackTool, cleaner: ConntrackCleaner
) -> None:
    rt = make(kernel, conntrack=cleaner)
    rt.set_routes("cali1", targets("198.18.0.1/32", "198.18.0.2/32", mac=MAC1))
    rt.apply()
    tool.gate.clear()  # every deletion hangs until the gate opens
    rt.remove_interface("cali1")
    rt.apply()  # returns although both deletions are outstanding
    assert kernel.table() == {} and tool.calls == []
    # Workload B gets one of the addresses on another interface: its route waits.
    rt.set_routes("cali2", targets("198.18.0.1/32", mac=MAC2))
    applied = threading.Thread(target=rt.apply)
    applied.start()
    applied.join(timeout=0.3)
    assert applied.is_alive() and kernel.table() == {}
    tool.gate.set()
    applied.join(timeout=10)
    assert kernel.table() == {"198.18.0.1/32": ("cali2", RTPROT_CALICO)}
    cleaner.flush(["198.18.0.2"])
    assert set(tool.addrs()) == {"198.18.0.1", "198.18.0.2"}  # .2 may race the route adds
    assert all("198.18.0.1/32" not in table for *_, table in tool.calls)


def test_a_reused_address_is_cleaned_before_its_new_route_in_one_apply(
    kernel: FakeKernel, tool: FakeConntrackTool, cleaner: ConntrackCleaner
) -> None:
    rt = make(kernel, conntrack=cleaner)
    rt.set_routes("cali1", targets("198.18.0.1/32", mac=MAC1))
    rt.apply()
    rt.remove_interface("cali1")
    rt.set_routes("cali2", targets("198.18.0.1/32", mac=MAC2))
    rt.apply()
    assert tool.addrs() == ["198.18.0.1"]
    assert all(table == {} for *_, table in tool.calls)
    assert kernel.table() == {"198.18.0.1/32": ("cali2", RTPROT_CALICO)}


def test_a_batch_of_released_addresses_is_listed_once_and_only_those_with_flows_deleted(
    kernel: FakeKernel, tool: FakeConntrackTool
) -> None:
    flows = ConntrackFlows(tool)
    addrs = ["198.18.0.1", "198.18.0.5", "198.18.0.11", "198.18.0.12"]
    assert flows.remove_flows_of(4, addrs) == 0  # the fake deletes nothing it finds
    assert tool.dumps == 1
    assert sorted(tool.addrs()) == ["198.18.0.1", "198.18.0.11"]  # the two with flows
    assert flows.remove_flows_of(4, ["198.18.0.5"]) == 0  # one address: no listing
    assert tool.dumps == 1 and tool.addrs()[-1] == "198.18.0.5"


def test_only_the_address_an_endpoint_loses_is_cleaned(
    kernel: FakeKernel, tool: FakeConntrackTool, cleaner: ConntrackCleaner
) -> None:
    rt = make(kernel, ip_version=6, conntrack=cleaner)
    rt.set_routes("cali1", targets("2001:db8::1/128", "2001:db8::2/128"))
    rt.apply()
    rt.set_routes("cali1", targets("2001:db8::1/128"))
    rt.apply()
    cleaner.flush(["2001:db8::2"])
    assert [(fam, a) for fam, _, a, _ in tool.calls] == [("ipv6", "2001:db8::2")] * 2


def test_flows_stay_while_the_address_stays_on_its_interface(
    kernel: FakeKernel, tool: FakeConntrackTool, cleaner: ConntrackCleaner
) -> None:
    kernel.add_route("198.18.0.1/32", "cali1", metric=100)  # ours, wrong metric: replaced
    rt = make(kernel, conntrack=cleaner)
    rt.set_routes("cali1", targets("198.18.0.1/32", mac=MAC1))
    rt.apply()
    rt.set_routes("cali1", targets("198.18.0.1/32", mac=MAC2))  # the MAC changed
    rt.remove_interface("cali1")  # removed and re-added before the next apply
    rt.set_routes("cali1", targets("198.18.0.1/32", mac=MAC2))
    rt.apply()
    cleaner.flush(["198.18.0.1"])
    assert tool.calls == []
    assert kernel.table() == {"198.18.0.1/32": ("cali1", RTPROT_CALICO)}


def recreate(kernel: FakeKernel, rt: RouteTable | None, iface: str) -> None:
    """`iface` deleted (the kernel drops its routes) and created again under a new index;
    `rt` hears of it (None: it misses both events)."""
    index = kernel.links.pop(iface)[0]
    kernel.routes = {k: r for k, r in kernel.routes.items() if r.dev != iface}
    kernel.links[iface] = (index + 100, True)
    if rt is not None:
        rt.on_iface_state(iface, False, 0)
        rt.on_iface_state(iface, True, index + 100)


@pytest.mark.parametrize("readd", ["same endpoint", "another endpoint", "unheard"])
def test_an_interface_recreated_under_its_name_inherits_no_flows(
    kernel: FakeKernel, tool: FakeConntrackTool, cleaner: ConntrackCleaner, readd: str
) -> None:
    """A pod re-created under its own name: same interface name, same address, a new veth,
    seen in one apply; its route is added only once the old flows are gone."""
    rt = make(kernel, conntrack=cleaner)
    rt.set_routes("cali1", targets("198.18.0.1/32", mac=MAC1))
    rt.apply()
    recreate(kernel, None if readd == "unheard" else rt, "cali1")
    if readd == "another endpoint":  # the old endpoint's removal and the new one's write
        rt.remove_interface("cali1")
    rt.set_routes("cali1", targets("198.18.0.1/32", mac=MAC2))
    if readd == "unheard":
        rt.resync()
    rt.apply()
    assert tool.addrs() == ["198.18.0.1"]
    assert all(table == {} for *_, table in tool.calls)
    assert kernel.table() == {"198.18.0.1/32": ("cali1", RTPROT_CALICO)}


def test_flows_stay_while_an_interface_flaps(
    kernel: FakeKernel, tool: FakeConntrackTool, cleaner: ConntrackCleaner
) -> None:
    rt = make(kernel, conntrack=cleaner)
    rt.set_routes("cali1", targets("198.18.0.1/32"))
    rt.apply()
    index = kernel.links["cali1"][0]
    rt.on_iface_state("cali1", False, index)
    kernel.routes.clear()  # the kernel flushes routes of a downed device
    rt.remove_interface("cali1")  # and the endpoint is re-written meanwhile
    rt.set_routes("cali1", targets("198.18.0.1/32"))
    rt.apply()
    rt.on_iface_state("cali1", True, index)
    rt.apply()
    cleaner.flush(["198.18.0.1"])
    assert tool.calls == []
    assert kernel.table() == {"198.18.0.1/32": ("cali1", RTPROT_CALICO)}


def test_an_address_taken_over_by_a_rival_interface_loses_its_flows(
    kernel: FakeKernel, tool: FakeConntrackTool, cleaner: ConntrackCleaner
) -> None:
    rt = make(kernel, conntrack=cleaner)
    rt.set_routes("cali1", targets("198.18.0.1/32"))
    rt.set_routes("cali2", targets("198.18.0.1/32"))
    rt.apply()
    assert kernel.table() == {"198.18.0.1/32": ("cali1", RTPROT_CALICO)}
    kernel.links["cali1"] = (kernel.links["cali1"][0], False)
    kernel.routes.clear()
    rt.on_iface_state("cali1", False, kernel.links["cali1"][0])
    rt.apply()
    assert tool.addrs() == ["198.18.0.1"]
    assert all(table == {} for *_, table in tool.calls)
    assert kernel.table() == {"198.18.0.1/32": ("cali2", RTPROT_CALICO)}


def test_an_address_routed_again_is_cleaned_again_before_its_route(
    kernel: FakeKernel, tool: FakeConntrackTool, cleaner: ConntrackCleaner
) -> None:
    """Between its release and its next route, a late packet of the old flow may have been
    tracked again (forwarded by the default route): the next route waits for a second run."""
    rt = make(kernel, conntrack=cleaner)
    rt.set_routes("cali1", targets("198.18.0.1/32"))
    rt.apply()
    rt.remove_interface("cali1")
    rt.apply()
    cleaner.flush(["198.18.0.1"])
    rt.apply()
    assert tool.addrs() == ["198.18.0.1"]  # once while the address has no route
    rt.set_routes("cali2", targets("198.18.0.1/32"))
    rt.apply()
    assert tool.addrs() == ["198.18.0.1"] * 2
    assert all(table == {} for *_, table in tool.calls)
    rt.remove_interface("cali2")
    rt.set_routes("cali1", targets("198.18.0.1/32"))
    rt.apply()
    assert tool.addrs() == ["198.18.0.1"] * 3


def test_an_address_released_before_its_route_was_ever_added_is_cleaned(
    kernel: FakeKernel, tool: FakeConntrackTool, cleaner: ConntrackCleaner
) -> None:
    """An endpoint created and deleted between two applies (routes lagging) had outbound
    flows all the same."""
    rt = make(kernel, conntrack=cleaner)
    rt.set_routes("cali1", targets("198.18.0.1/32"))
    rt.remove_interface("cali1")
    rt.apply()
    cleaner.flush(["198.18.0.1"])
    assert tool.addrs() == ["198.18.0.1"]


def test_a_stale_route_found_at_start_has_its_flows_cleaned(
    kernel: FakeKernel, tool: FakeConntrackTool, cleaner: ConntrackCleaner
) -> None:
    kernel.add_route("198.18.0.9/32", "cali1")  # its endpoint went while Felix was down
    make(kernel, conntrack=cleaner).apply()
    cleaner.flush(["198.18.0.9"])
    assert tool.addrs() == ["198.18.0.9"]


def test_a_failing_cleanup_is_retried_and_holds_back_the_new_route(
    kernel: FakeKernel, tool: FakeConntrackTool, cleaner: ConntrackCleaner
) -> None:
    rt = make(kernel, conntrack=cleaner)
    rt.set_routes("cali1", targets("198.18.0.1/32"))
    rt.apply()
    tool.stderr = "conntrack v1.4.7 (conntrack-tools): Operation failed: invalid parameters\n"
    rt.remove_interface("cali1")
    rt.apply()
    wait_until(lambda: len(tool.calls) >= 2, 5.0, "a retry")  # in the background
    rt.set_routes("cali2", targets("198.18.0.1/32"))
    with pytest.raises(CommandFailed, match="invalid parameters"):
        rt.apply()
    assert kernel.table() == {} and rt.needs_apply
    tool.returncode, tool.stderr = 0, "conntrack v1.4.7: 3 flow entries have been deleted.\n"
    rt.apply()
    assert kernel.table() == {"198.18.0.1/32": ("cali2", RTPROT_CALICO)}
    assert tool.calls[-1][1:3] == ("--reply-src", "198.18.0.1")
    assert "198.18.0.1/32" not in tool.calls[-1][3]


@pytest.mark.parametrize(
    ("returncode", "stderr", "deleted"),
    [
        (0, "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted.\n", 4),
        (1, "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n", 0),
        (1, "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted.\n", None),
        (2, "conntrack v1.4.7 (conntrack-tools): Operation failed: such conntrack\n", None),
        (-1, "conntrack: command not found", None),
    ],
)
def test_the_conntrack_tool_exit_status(
    kernel: FakeKernel, returncode: int, stderr: str, deleted: int | None
) -> None:
    tool = FakeConntrackTool(kernel, stderr=stderr, returncode=returncode)
    if deleted is None:
        with pytest.raises(CommandFailed):
            ConntrackFlows(tool).remove_flows(4, "198.18.0.1")
    else:
        assert ConntrackFlows(tool).remove_flows(4, "198.18.0.1") == deleted
