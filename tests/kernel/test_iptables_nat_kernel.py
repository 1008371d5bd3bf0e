"""The nat table through IptablesTable against real iptables (nft and legacy, both families):
Calico's chains and hooks next to foreign NAT rules, restart clean-up and tamper repair."""

from __future__ import annotations

import pytest

from calico.calc.messages import IPSetType, NatMapping, WorkloadEndpoint
from calico.dataplane.drivers.ipsets import IPSets
from calico.dataplane.drivers.iptables_table import IptablesTable, parse_save
from calico.programs import Runner
from calico.rules import naming, nat, static
from calico.rules.config import RulesConfig
from calico.rules.model import Chain
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel

CFG = RulesConfig(floating_ips=True, nat_port_range=(32768, 65535))


def tool(version: int, backend: str, verb: str = "") -> str:
    return f"{'ip6' if version == 6 else 'ip'}tables-{backend}{verb}"


def desired(version: int) -> list[Chain]:
    ep = WorkloadEndpoint(
        "cali1",
        None,
        (),
        (),
        (),
        (),
        ipv4_nats=(NatMapping("198.19.0.1", "198.18.7.1"),),
        ipv6_nats=(NatMapping("2001:db8:1::1", "2001:db8:7::1"),),
    )
    return [
        *nat.static_nat_chains(CFG, version),
        *nat.floating_ip_chains(CFG, [ep], version),
        nat.nat_outgoing_chain(CFG, version, active=True),
    ]


def nat_state(runner: Runner, version: int, backend: str) -> dict[str, list[str | None]]:
    out = runner.run([tool(version, backend, "-save"), "-t", "nat"]).stdout
    return parse_save(out).chains


def program(runner: Runner, version: int, backend: str) -> IptablesTable:
    ipsets = IPSets(version, runner)
    for set_id in (naming.IPSET_ID_ALL_POOLS, naming.IPSET_ID_MASQ_POOLS):
        ipsets.set_members(set_id, IPSetType.NET, ["198.19.0.0/16", "2001:db8:1::/48"])
    ipsets.apply_updates()
    table = IptablesTable("nat", version, runner, backend=backend)
    table.update_chains(desired(version))
    table.set_hooks(static.hooks(CFG, "nat"))
    table.apply()
    return table


@pytest.mark.parametrize("backend", ["nft", "legacy"])
@pytest.mark.parametrize("version", [4, 6])
def test_nat_table_next_to_foreign_rules_restart_and_repair(
    netns: Namespaces, version: int, backend: str
) -> None:
    runner = Runner(netns=netns.add("h"))
    ipt = tool(version, backend)
    src = "198.18.9.0/24" if version == 4 else "2001:db8:9::/48"
    runner.run([ipt, "-t", "nat", "-A", "POSTROUTING", "-s", src, "-j", "MASQUERADE"])
    runner.run([ipt, "-t", "nat", "-N", "FOREIGN"])
    runner.run([ipt, "-t", "nat", "-A", "PREROUTING", "-j", "FOREIGN"])
    runner.run([ipt, "-t", "nat", "-N", "cali-left-over"])  # a previous Felix's stale chain
    runner.run([ipt, "-t", "nat", "-A", "cali-left-over", "-j", "RETURN"])

    program(runner, version, backend)
    state = nat_state(runner, version, backend)
    for chain in desired(version):
        assert state[chain.name] == chain.rule_hashes(), chain.name
    assert "cali-left-over" not in state
    for kernel_chain in ("PREROUTING", "POSTROUTING", "OUTPUT"):
        assert state[kernel_chain][0] is not None  # our hook first, foreign rules after it
        assert state[kernel_chain][1:] == ([None] if kernel_chain != "OUTPUT" else [])
    assert "FOREIGN" in state

    # A restarted Felix (a new table object) recognises its chains: nothing to write.
    restarted = program(runner, version, backend)
    assert nat_state(runner, version, backend) == state

    # Tampering is repaired by the periodic refresh.
    runner.run([ipt, "-t", "nat", "-F", "cali-fip-dnat"])
    runner.run([ipt, "-t", "nat", "-D", "POSTROUTING", "1"])
    restarted.full_resync()
    assert nat_state(runner, version, backend) == state

    restarted.set_hooks([])
    restarted.remove_chains(restarted.chain_names())
    restarted.apply()
    leftover = runner.run([tool(version, backend, "-save"), "-t", "nat"]).stdout
    assert "cali" not in leftover
    assert "-j MASQUERADE" in leftover and "-A PREROUTING -j FOREIGN" in leftover
