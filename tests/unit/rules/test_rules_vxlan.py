"""The VXLAN rules of the filter table (Felix's static.go, VXLAN branches)."""

from __future__ import annotations

import pytest

from calico.rules import naming, static
from calico.rules.config import RulesConfig
from calico.rules.model import ACCEPT, DROP, Chain, Verdict


def chains(cfg: RulesConfig, version: int, vxlan: bool) -> dict[str, Chain]:
    return {c.name: c for c in static.static_filter_chains(cfg, version, vxlan=vxlan)}


@pytest.mark.parametrize("version", [4, 6])
def test_no_vxlan_rules_unless_vxlan_is_in_use(version: int) -> None:
    cfg = RulesConfig()
    off = chains(cfg, version, vxlan=False)
    for name in (naming.CHAIN_INPUT, naming.CHAIN_OUTPUT):
        assert not any("4789" in r.spec() for r in off[name].rules)
    assert off == chains(cfg, version, vxlan=False)


@pytest.mark.parametrize("version", [4, 6])
def test_input_accepts_vxlan_from_vteps_only_and_output_allows_it_to_them(version: int) -> None:
    cfg = RulesConfig(vxlan_port=8472)
    vteps = f"cali{version}0all-vxlan-net"
    on, off = chains(cfg, version, vxlan=True), chains(cfg, version, vxlan=False)
    allow, drop, *rest = on[naming.CHAIN_INPUT].rules
    assert rest == list(off[naming.CHAIN_INPUT].rules)  # ahead of everything else
    for rule in (allow, drop):
        assert "-p udp -m multiport --dports 8472" in rule.spec()
        assert "-m addrtype --dst-type LOCAL" in rule.spec()
    assert f"--match-set {vteps} src" in allow.spec() and allow.action == ACCEPT
    assert "--match-set" not in drop.spec() and drop.action == DROP
    output = on[naming.CHAIN_OUTPUT].rules
    added = [r for r in output if r not in off[naming.CHAIN_OUTPUT].rules]
    assert len(added) == 1 and added[0].action == ACCEPT
    assert f"--match-set {vteps} dst" in added[0].spec()
    assert "-m addrtype --src-type LOCAL" in added[0].spec()
    # After the host -> workload RETURNs, before host endpoint policy.
    assert output.index(added[0]) == len(cfg.workload_iface_prefixes) + 1


def test_vxlan_drop_uses_the_configured_deny_action() -> None:
    cfg = RulesConfig(filter_deny_action="REJECT", filter_allow_action="RETURN")
    allow, drop, *_ = chains(cfg, 4, vxlan=True)[naming.CHAIN_INPUT].rules
    assert (allow.action, drop.action) == (Verdict("RETURN"), Verdict("REJECT"))
