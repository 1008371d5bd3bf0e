"""calico.rules.nat: the nat table's chains as Felix renders them (felix/rules/nat.go)."""

from __future__ import annotations

import pytest

from calico.calc.messages import NatMapping, WorkloadEndpoint
from calico.rules import nat, static
from calico.rules.config import RulesConfig
from calico.rules.model import Chain

FIPS_ON = RulesConfig(floating_ips=True)


def wep(
    iface: str,
    *nats: tuple[str, str],
    orchestrator: str = "k8s",
) -> WorkloadEndpoint:
    mappings = tuple(NatMapping(i, e) for i, e in nats)
    return WorkloadEndpoint(
        iface,
        None,
        (),
        (),
        (),
        (),
        ipv4_nats=tuple(n for n in mappings if ":" not in n.internal_ip),
        ipv6_nats=tuple(n for n in mappings if ":" in n.internal_ip),
        orchestrator=orchestrator,
    )


def specs(chain: Chain) -> list[str]:
    return [r.spec() for r in chain.rules]


def by_name(chains: list[Chain]) -> dict[str, list[str]]:
    return {c.name: specs(c) for c in chains}


def test_static_chains_and_hooks() -> None:
    chains = by_name(nat.static_nat_chains(RulesConfig(), 4))
    assert chains == {
        "cali-PREROUTING": ["-j cali-fip-dnat"],
        "cali-POSTROUTING": ["-j cali-fip-snat", "-j cali-nat-outgoing"],
        "cali-OUTPUT": ["-j cali-fip-dnat"],
    }
    hooks = {h.chain: [r.spec() for r in h.insert] for h in static.hooks(RulesConfig(), "nat")}
    assert hooks == {
        "PREROUTING": ["-j cali-PREROUTING"],
        "POSTROUTING": ["-j cali-POSTROUTING"],
        "OUTPUT": ["-j cali-OUTPUT"],
    }


def test_openstack_metadata_dnat_is_ipv4_only() -> None:
    cfg = RulesConfig(workload_iface_prefixes=("tap",), metadata_addr="198.18.0.5")
    v4 = by_name(nat.static_nat_chains(cfg, 4))["cali-PREROUTING"]
    assert v4[1] == (
        "-p tcp -d 169.254.169.254/32 -m multiport --dports 80"
        " -j DNAT --to-destination 198.18.0.5:8775"
    )
    assert by_name(nat.static_nat_chains(cfg, 6))["cali-PREROUTING"] == ["-j cali-fip-dnat"]
    no_metadata = RulesConfig(workload_iface_prefixes=("tap",), metadata_addr=None)
    assert len(nat.static_nat_chains(no_metadata, 4)[0].rules) == 1


def test_nat_outgoing_is_empty_until_a_pool_masquerades() -> None:
    assert nat.nat_outgoing_chain(RulesConfig(), 4, active=False) == Chain("cali-nat-outgoing")
    for version in (4, 6):
        chain = nat.nat_outgoing_chain(RulesConfig(), version, active=True)
        assert specs(chain) == [
            f"-m set --match-set cali{version}0masq-ipam-pools src"
            f" -m set ! --match-set cali{version}0all-ipam-pools dst -j MASQUERADE --random-fully"
        ]
    plain = nat.nat_outgoing_chain(RulesConfig(nat_random_fully=False), 4, active=True)
    assert specs(plain)[0].endswith("dst -j MASQUERADE")


def test_nat_outgoing_address_is_for_ipv4_and_port_range_for_tcp_udp() -> None:
    cfg = RulesConfig(nat_outgoing_address="198.18.0.1", nat_port_range=(1024, 2047))
    v4 = specs(nat.nat_outgoing_chain(cfg, 4, active=True))
    assert [s.split(" dst ", 1)[1] for s in v4] == [
        "-p tcp -j SNAT --to-source 198.18.0.1:1024-2047 --random-fully",
        "-p tcp -j RETURN",
        "-p udp -j SNAT --to-source 198.18.0.1:1024-2047 --random-fully",
        "-p udp -j RETURN",
        "-j SNAT --to-source 198.18.0.1 --random-fully",
    ]
    v6 = specs(nat.nat_outgoing_chain(RulesConfig(nat_outgoing_address="198.18.0.1"), 6, True))
    assert v6[0].endswith("-j MASQUERADE --random-fully")
    iface = specs(nat.nat_outgoing_chain(RulesConfig(nat_outgoing_iface="eth0"), 4, True))
    assert iface[0].endswith("dst -o eth0 -j MASQUERADE --random-fully")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nat_outgoing_address": "2001:db8::1"},
        {"nat_outgoing_address": "not-an-ip"},
        {"nat_port_range": (2000, 1000)},
        {"nat_port_range": (0, 10)},
    ],
)
def test_bad_nat_settings_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RulesConfig(**kwargs)  # type: ignore[arg-type]


def test_floating_ips_dnat_every_external_ip_and_snat_hairpin_once() -> None:
    eps = [
        wep("cali2", ("198.19.0.2", "198.18.7.9")),
        wep("cali1", ("198.19.0.1", "198.18.7.2"), ("198.19.0.1", "198.18.7.1")),
        wep("cali3", ("2001:db8:1::1", "2001:db8:7::1")),
    ]
    chains = by_name(nat.floating_ip_chains(FIPS_ON, eps, 4))
    assert chains == {
        "cali-fip-dnat": [
            "-d 198.18.7.1 -j DNAT --to-destination 198.19.0.1",
            "-d 198.18.7.2 -j DNAT --to-destination 198.19.0.1",
            "-d 198.18.7.9 -j DNAT --to-destination 198.19.0.2",
        ],
        "cali-fip-snat": [
            "-d 198.19.0.1 -s 198.19.0.1 -j SNAT --to-source 198.18.7.1 --random-fully",
            "-d 198.19.0.2 -s 198.19.0.2 -j SNAT --to-source 198.18.7.9 --random-fully",
        ],
    }
    v6 = by_name(nat.floating_ip_chains(FIPS_ON, eps, 6))
    assert v6["cali-fip-dnat"] == ["-d 2001:db8:7::1 -j DNAT --to-destination 2001:db8:1::1"]


def test_an_external_ip_claimed_twice_goes_to_the_smallest_internal_ip() -> None:
    eps = [wep("cali9", ("198.19.0.9", "198.18.7.1")), wep("cali1", ("198.19.0.1", "198.18.7.1"))]
    for order in (eps, eps[::-1]):
        chains = by_name(nat.floating_ip_chains(FIPS_ON, order, 4))
        assert chains["cali-fip-dnat"] == ["-d 198.18.7.1 -j DNAT --to-destination 198.19.0.1"]
        assert len(chains["cali-fip-snat"]) == 1


def test_mappings_apply_only_with_floating_ips_enabled_or_for_openstack() -> None:
    k8s = wep("cali1", ("198.19.0.1", "198.18.7.1"))
    vm = wep("tap1", ("198.19.0.2", "198.18.7.2"), orchestrator="openstack")
    off = RulesConfig()
    assert nat.endpoint_nats(off, k8s, 4) == ()
    assert nat.endpoint_nats(off, vm, 4) == vm.ipv4_nats
    assert nat.endpoint_nats(FIPS_ON, k8s, 4) == k8s.ipv4_nats
    assert nat.endpoint_nats(FIPS_ON, k8s, 6) == ()
    dnat = by_name(nat.floating_ip_chains(off, [k8s, vm], 4))["cali-fip-dnat"]
    assert dnat == ["-d 198.18.7.2 -j DNAT --to-destination 198.19.0.2"]
