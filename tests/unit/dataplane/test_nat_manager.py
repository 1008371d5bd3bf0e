"""NatManager: NAT mappings and IP pools -> nat chains per family and the pool IP sets;
EndpointManager: floating IPs are routed to their endpoint's interface."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from calico.calc.messages import (
    IPAMPool,
    IPAMPoolRemove,
    IPAMPoolUpdate,
    NatMapping,
    WorkloadEndpoint,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.dataplane.drivers.ipsets import IPSets, IPSetWriter
from calico.dataplane.drivers.iptables_table import IptablesTable
from calico.dataplane.drivers.links import LinkConfigurator, SysctlCommands
from calico.dataplane.drivers.routetable import RouteTable, RouteTarget
from calico.dataplane.managers.endpoints import EndpointManager
from calico.dataplane.managers.nat import NatManager
from calico.programs import CommandResult
from calico.rules.config import RulesConfig
from calico.testing.dataplane import NoCommands, RecordingTable


class IPSetRecorder:
    """An empty kernel that records what `ipset restore` is given."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        if list(args) != ["ipset", "save"]:
            self.lines += (stdin or "").splitlines()
        return CommandResult(0, "", "")


def specs(table: RecordingTable, name: str) -> list[str]:
    return [r.spec() for r in table.chains[name].rules]


def setup(
    cfg: RulesConfig | None = None,
) -> tuple[NatManager, dict[int, RecordingTable], IPSetRecorder, list[IPSets]]:
    tables = {v: RecordingTable("nat", v) for v in (4, 6)}
    others = [RecordingTable("filter", v) for v in (4, 6)]
    recorder = IPSetRecorder()
    drivers = [IPSets(4, recorder), IPSets(6, recorder)]
    mgr = NatManager(cfg or RulesConfig(floating_ips=True), [*tables.values(), *others], drivers)
    assert all(not t.chains for t in others)
    return mgr, tables, recorder, drivers


def wep(iface: str, *nats: tuple[str, str], orchestrator: str = "k8s") -> WorkloadEndpoint:
    mappings = tuple(NatMapping(i, e) for i, e in nats)
    return WorkloadEndpoint(
        iface,
        "ee:ee:ee:ee:ee:01",
        ("198.19.0.1/32",),
        (),
        (),
        (),
        ipv4_nats=tuple(n for n in mappings if ":" not in n.internal_ip),
        ipv6_nats=tuple(n for n in mappings if ":" in n.internal_ip),
        orchestrator=orchestrator,
    )


def test_chains_and_sets_exist_from_the_first_apply() -> None:
    mgr, tables, recorder, drivers = setup()
    mgr.complete_deferred_work()
    for table in tables.values():
        assert set(table.chains) == {"cali-fip-dnat", "cali-fip-snat", "cali-nat-outgoing"}
        assert all(not c.rules for c in table.chains.values())
    IPSetWriter(recorder, drivers).apply_updates()
    creates = {line.split()[1] for line in recorder.lines if line.startswith("create")}
    assert creates == {f"cali{v}0{s}-ipam-pools" for v in (4, 6) for s in ("all", "masq")}


def test_floating_ips_follow_endpoints_and_ignore_unrelated_churn() -> None:
    mgr, tables, _, _ = setup()
    fip = WorkloadEndpointID("default", "vm")
    mgr.on_update(WorkloadEndpointUpdate(fip, wep("cali1", ("198.19.0.1", "198.18.7.1"))))
    mgr.on_update(WorkloadEndpointUpdate(WorkloadEndpointID("default", "x"), wep("cali2")))
    mgr.complete_deferred_work()
    assert specs(tables[4], "cali-fip-dnat") == [
        "-d 198.18.7.1 -j DNAT --to-destination 198.19.0.1"
    ]
    assert specs(tables[4], "cali-fip-snat")[0].startswith("-d 198.19.0.1 -s 198.19.0.1 -j SNAT")
    assert not tables[6].chains["cali-fip-dnat"].rules
    updates = tables[4].updates
    for name in ("x", "y"):  # endpoints without NATs come and go: no chain work at all
        mgr.on_update(WorkloadEndpointUpdate(WorkloadEndpointID("default", name), wep("cali3")))
        mgr.on_update(WorkloadEndpointRemove(WorkloadEndpointID("default", name)))
    mgr.on_update(WorkloadEndpointUpdate(fip, wep("cali1", ("198.19.0.1", "198.18.7.1"))))
    mgr.complete_deferred_work()
    assert tables[4].updates == updates
    mgr.on_update(WorkloadEndpointRemove(fip))
    mgr.complete_deferred_work()
    assert not tables[4].chains["cali-fip-dnat"].rules


def test_without_floating_ips_only_openstack_mappings_are_programmed() -> None:
    mgr, tables, _, _ = setup(RulesConfig())
    k8s = wep("cali1", ("198.19.0.1", "198.18.7.1"))
    vm = wep("tap1", ("2001:db8:1::1", "2001:db8:7::1"), orchestrator="openstack")
    mgr.on_update(WorkloadEndpointUpdate(WorkloadEndpointID("default", "k8s"), k8s))
    mgr.on_update(WorkloadEndpointUpdate(WorkloadEndpointID("openstack", "vm"), vm))
    mgr.complete_deferred_work()
    assert not tables[4].chains["cali-fip-dnat"].rules
    assert specs(tables[6], "cali-fip-dnat") == [
        "-d 2001:db8:7::1 -j DNAT --to-destination 2001:db8:1::1"
    ]


def test_pools_fill_the_sets_and_activate_nat_outgoing_per_family() -> None:
    mgr, tables, recorder, drivers = setup()
    mgr.on_update(IPAMPoolUpdate("masq", IPAMPool("198.19.0.0/16", True)))
    mgr.on_update(IPAMPoolUpdate("v6", IPAMPool("2001:db8:1::/48", False)))
    mgr.complete_deferred_work()
    assert specs(tables[4], "cali-nat-outgoing") == [
        "-m set --match-set cali40masq-ipam-pools src"
        " -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully"
    ]
    assert not tables[6].chains["cali-nat-outgoing"].rules  # no IPv6 pool masquerades
    writer = IPSetWriter(recorder, drivers)
    writer.apply_updates()
    adds = {tuple(line.split()[1:]) for line in recorder.lines if line.startswith("add")}
    assert adds == {
        ("cali40all-ipam-pools", "198.19.0.0/16"),
        ("cali40masq-ipam-pools", "198.19.0.0/16"),
        ("cali60all-ipam-pools", "2001:db8:1::/48"),
    }
    mgr.on_update(IPAMPoolRemove("masq"))
    mgr.complete_deferred_work()
    assert not tables[4].chains["cali-nat-outgoing"].rules
    recorder.lines.clear()
    writer.apply_updates()
    assert sorted(recorder.lines) == [
        "del cali40all-ipam-pools 198.19.0.0/16",
        "del cali40masq-ipam-pools 198.19.0.0/16",
    ]


class RecordingRoutes(RouteTable):
    def __init__(self, version: int) -> None:
        super().__init__(NoCommands(), lambda: None, version)  # type: ignore[arg-type,return-value]
        self.targets: dict[str, list[RouteTarget]] = {}

    def set_routes(self, iface: str, targets: Iterable[RouteTarget]) -> None:
        self.targets[iface] = list(targets)


def test_floating_ips_are_routed_to_the_endpoint_with_its_mac() -> None:
    runner = NoCommands()
    routes = {4: RecordingRoutes(4), 6: RecordingRoutes(6)}
    tables = [
        IptablesTable(t, v, runner, backend="nft")
        for t in ("filter", "raw", "mangle")
        for v in (4, 6)
    ]
    mgr = EndpointManager(
        RulesConfig(), tables, routes, LinkConfigurator(SysctlCommands(runner), ipv6=True)
    )  # FloatingIPs Disabled: only the OpenStack endpoint's mappings count
    vm = WorkloadEndpoint(
        "tap1",
        "fa:16:3e:00:00:01",
        ("198.19.0.1/32",),
        ("2001:db8:1::1/128",),
        (),
        (),
        ipv4_nats=(NatMapping("198.19.0.1", "198.18.7.1"),),
        ipv6_nats=(NatMapping("2001:db8:1::1", "2001:db8:7::1"),),
        orchestrator="openstack",
    )
    pod = wep("cali1", ("198.19.0.1", "198.18.7.2"))
    mgr.on_update(WorkloadEndpointUpdate(WorkloadEndpointID("openstack", "vm"), vm))
    mgr.on_update(WorkloadEndpointUpdate(WorkloadEndpointID("default", "pod"), pod))
    mgr.complete_deferred_work()
    assert routes[4].targets["tap1"] == [
        RouteTarget("198.19.0.1/32", "fa:16:3e:00:00:01"),
        RouteTarget("198.18.7.1/32", "fa:16:3e:00:00:01"),
    ]
    assert routes[6].targets["tap1"] == [
        RouteTarget("2001:db8:1::1/128"),
        RouteTarget("2001:db8:7::1/128"),
    ]
    assert [t.cidr for t in routes[4].targets["cali1"]] == ["198.19.0.1/32"]
