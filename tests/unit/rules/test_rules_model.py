"""Match/action rendering, rule-hash stability and chaining, config validation."""

from __future__ import annotations

import pytest

from calico.calc.messages import PortRange
from calico.rules.config import RulesConfig
from calico.rules.model import (
    ACCEPT,
    ANY,
    DROP,
    Chain,
    Goto,
    Jump,
    Log,
    Rule,
    chained_hashes,
    clear_mark,
    escape_comment,
    set_mark,
    verdict,
)


def test_match_fragments_render_in_insertion_order() -> None:
    m = (
        ANY.protocol("tcp")
        .in_iface("cali+")
        .src_net("198.18.0.0/16", negate=True)
        .ipset("cali40s:a", "src")
        .ipset("cali40n:b", "dst", ip_port=True, negate=True)
        .ports("dst", [PortRange(80, 80), PortRange(8000, 8080)])
        .ct_state("INVALID")
        .mark_clear(0x20000)
        .mark_set(0x10000)
        .mark_not_clear(0x30000)
    )
    assert m.render() == (
        "-p tcp -i cali+ ! -s 198.18.0.0/16 -m set --match-set cali40s:a src "
        "-m set ! --match-set cali40n:b dst,dst -m multiport --dports 80,8000:8080 "
        "-m conntrack --ctstate INVALID -m mark --mark 0x0/0x20000 "
        "-m mark --mark 0x10000/0x10000 -m mark ! --mark 0x0/0x30000"
    )


def test_icmp_is_family_specific() -> None:
    assert ANY.icmp(4, 8, 0).render() == "-m icmp --icmp-type 8/0"
    assert ANY.icmp(6, 128, negate=True).render() == "-m icmp6 ! --icmpv6-type 128"


def test_actions_render() -> None:
    assert set_mark(0x10000).render() == "-j MARK --set-xmark 0x10000/0x10000"
    assert clear_mark(0x30000).render() == "-j MARK --set-xmark 0x0/0x30000"
    assert Jump("cali-x").render() == "-j cali-x" and Jump("cali-x").target_chain == "cali-x"
    assert Goto("cali-y").render() == "-g cali-y" and Goto("cali-y").target_chain == "cali-y"
    assert DROP.target_chain is None
    assert verdict("REJECT").render() == "-j REJECT"
    with pytest.raises(ValueError):
        verdict("JUMP")


def test_log_prefix_is_escaped_and_capped() -> None:
    rendered = Log("a very long prefix with 'quotes' in it").render()
    prefix = rendered.split('"')[1]
    assert len(prefix) <= 29 and "'" not in prefix and prefix.endswith(": ")


def test_comments_are_escaped_and_truncated() -> None:
    assert escape_comment('say "hi"; rm -rf $HOME') == "say _hi__ rm -rf _HOME"
    assert len(escape_comment("x" * 1000)) == 256


def test_rule_hashes_are_stable() -> None:
    """Pinned values: a change here rewrites every chain on upgrade, so make it on purpose."""
    chain = Chain("cali-test", (Rule(action=DROP), Rule(ANY.protocol("tcp"), ACCEPT)))
    assert chain.rule_hashes() == ["ZXTcbobwKvTGF_qs", "SQk0qHKgVlHAUjzz"]


def test_rule_hash_depends_on_chain_position_and_predecessors() -> None:
    a, b, c = Rule(action=DROP), Rule(action=ACCEPT), Rule(ANY.protocol("udp"), DROP)
    base = chained_hashes("cali-x", [a, b, c])
    assert len(set(base)) == 3 and all(len(h) == 16 for h in base)
    assert chained_hashes("cali-y", [a, b, c])[0] != base[0]
    changed_first = chained_hashes("cali-x", [Rule(action=ACCEPT), b, c])
    assert all(x != y for x, y in zip(changed_first, base, strict=True))
    assert chained_hashes("cali-x", [a, b])[:2] == base[:2]


def test_chain_targets() -> None:
    chain = Chain("cali-a", (Rule(action=Jump("cali-b")), Rule(action=Goto("cali-c")), Rule()))
    assert chain.targets() == {"cali-b", "cali-c"}


def test_config_defaults_are_felix_defaults() -> None:
    cfg = RulesConfig()
    assert (cfg.mark_accept, cfg.mark_pass, cfg.mark_scratch0, cfg.mark_scratch1) == (
        0x10000,
        0x20000,
        0x40000,
        0x80000,
    )
    assert [(p.protocol, p.port) for p in cfg.failsafe_inbound][:3] == [
        ("tcp", 22),
        ("udp", 68),
        ("tcp", 179),
    ]
    assert cfg.ip_versions == (4, 6) and not cfg.openstack_enabled


def test_marks_from_mask_are_allocated_lowest_bit_first() -> None:
    cfg = RulesConfig.from_mark_mask(0xFF000000)
    assert cfg.calico_marks == (0x1000000, 0x2000000, 0x4000000, 0x8000000)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mark_accept": 0x30000},  # two bits
        {"mark_pass": 0x10000},  # overlaps accept
        {"mark_scratch1": 0x1},  # outside the mask
        {"filter_deny_action": "ACCEPT"},
        {"endpoint_to_host_action": "LOG"},
        {"workload_iface_prefixes": ()},
    ],
)
def test_invalid_config_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RulesConfig(**kwargs)  # type: ignore[arg-type]


def test_tap_prefix_turns_on_openstack_special_cases() -> None:
    assert RulesConfig(workload_iface_prefixes=("tap",)).openstack_enabled
