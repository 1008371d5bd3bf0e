"""IptablesTable against real iptables (nft and legacy, IPv4 and IPv6) inside test namespaces.

Also feeds every golden file to the real iptables-restore, so the renderer's output is known
to be valid kernel input, not just stable text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from calico.calc.messages import (
    Action,
    IPSetType,
    ParsedPolicy,
    ParsedRule,
    PolicyID,
    PortRange,
    TierInfo,
    WorkloadEndpoint,
)
from calico.dataplane.drivers.ipsets import IPSets
from calico.dataplane.drivers.iptables_table import IptablesTable, parse_save
from calico.programs import Runner
from calico.rules import dispatch, endpoints, policy, static
from calico.rules.config import RulesConfig
from calico.rules.model import Chain
from calico.testing.dataplane import RecordingRunner
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "rules"
CFG = RulesConfig()
PID = PolicyID("default", "default.web")
POLICY = ParsedPolicy(
    inbound_rules=(
        ParsedRule(
            Action.ALLOW,
            protocol="TCP",
            src_ipset_ids=("s:clients",),
            dst_ports=tuple(PortRange(p, p) for p in range(8000, 8020)),
            dst_named_port_ipset_ids=("n:http",),
        ),
        ParsedRule(Action.DENY, protocol="UDP", not_dst_ports=(PortRange(53, 53),)),
    ),
    outbound_rules=(ParsedRule(Action.ALLOW),),
)


def restores(runner: RecordingRunner) -> int:
    return sum(c[0].endswith("-restore") for c in runner.calls)


def tool(version: int, backend: str, verb: str = "") -> str:
    return f"{'ip6' if version == 6 else 'ip'}tables-{backend}{verb}"


def endpoint(iface: str) -> WorkloadEndpoint:
    tiers = (TierInfo("default", ingress_policies=(PID,)),)
    return WorkloadEndpoint(iface, None, (), (), (), tiers)


def desired_chains(version: int, ifaces: list[str]) -> list[Chain]:
    return [
        *static.static_filter_chains(CFG, version),
        *dispatch.workload_dispatch_chains(CFG, ifaces),
        *dispatch.host_filter_dispatch_chains([]),
        *policy.policy_chains(CFG, PID, POLICY, version),
        *(c for i in ifaces for c in endpoints.workload_endpoint_chains(CFG, endpoint(i))),
    ]


def counters(runner: RecordingRunner, version: int, backend: str, rule_hash: str) -> int:
    out = runner.inner.run([tool(version, backend, "-save"), "-c", "-t", "filter"]).stdout
    line = next(ln for ln in out.splitlines() if f"cali:{rule_hash}" in ln)
    found = re.match(r"\[(\d+):\d+\]", line)
    assert found, line
    return int(found.group(1))


@pytest.mark.parametrize("backend", ["nft", "legacy"])
@pytest.mark.parametrize("version", [4, 6])
def test_round_trip_next_to_foreign_state(netns: Namespaces, version: int, backend: str) -> None:
    runner = RecordingRunner(Runner(netns=netns.add("h")))
    ipt = tool(version, backend)
    foreign_src = "198.18.9.9" if version == 4 else "2001:db8::9"
    runner.inner.run([ipt, "-A", "INPUT", "-s", foreign_src, "-j", "ACCEPT"])
    runner.inner.run([ipt, "-N", "FOREIGN"])
    runner.inner.run([ipt, "-A", "FOREIGN", "-j", "RETURN"])
    ipsets = IPSets(version, runner.inner)
    ipsets.set_members("s:clients", IPSetType.NET, [])
    ipsets.set_members("n:http", IPSetType.IP_PORT, [])
    ipsets.apply_updates()

    table = IptablesTable("filter", version, runner, backend=backend)
    table.update_chains(desired_chains(version, ["cali1"]))
    table.set_hooks(static.hooks(CFG, "filter"))
    table.apply()
    state = parse_save(runner.inner.run([tool(version, backend, "-save"), "-t", "filter"]).stdout)
    for chain in desired_chains(version, ["cali1"]):
        assert state.chains[chain.name] == chain.rule_hashes()
    assert state.chains["INPUT"][0] is not None and state.chains["INPUT"][1:] == [None]
    assert state.chains["FOREIGN"] == [None]
    assert restores(runner) == 1

    # Traffic through cali-OUTPUT; its "clear marks" rule counts every packet.
    loopback = "127.0.0.1" if version == 4 else "::1"
    netns.exec(runner.inner.netns or "", ["ping", "-c", "2", "-W", "1", loopback])
    clear_marks = state.chains["cali-OUTPUT"][2]
    assert clear_marks is not None
    before = counters(runner, version, backend, clear_marks)
    assert before >= 2

    table.apply()
    assert restores(runner) == 1  # nothing changed: no write at all

    table.update_chains(desired_chains(version, ["cali1", "cali2"]))
    table.apply()
    assert restores(runner) == 2
    assert counters(runner, version, backend, clear_marks) >= before  # cali-OUTPUT untouched


@pytest.mark.parametrize("backend", ["nft", "legacy"])
@pytest.mark.parametrize("version", [4, 6])
def test_full_resync_repairs_what_others_broke(
    netns: Namespaces, version: int, backend: str
) -> None:
    runner = RecordingRunner(Runner(netns=netns.add("h")))
    ipt = tool(version, backend)
    ipsets = IPSets(version, runner.inner)
    ipsets.set_members("s:clients", IPSetType.NET, [])
    ipsets.set_members("n:http", IPSetType.IP_PORT, [])
    ipsets.apply_updates()
    table = IptablesTable("filter", version, runner, backend=backend)
    table.update_chains(desired_chains(version, ["cali1"]))
    table.set_hooks(static.hooks(CFG, "filter"))
    table.apply()

    egress = policy.policy_chains(CFG, PID, POLICY, version)[1]  # nobody jumps to it
    runner.inner.run([ipt, "-F", egress.name])
    runner.inner.run([ipt, "-X", egress.name])
    runner.inner.run([ipt, "-D", "cali-OUTPUT", "1"])
    runner.inner.run([ipt, "-I", "INPUT", "1", "-p", "tcp", "-j", "ACCEPT"])
    table.full_resync()

    state = parse_save(runner.inner.run([tool(version, backend, "-save"), "-t", "filter"]).stdout)
    for chain in desired_chains(version, ["cali1"]):
        assert state.chains[chain.name] == chain.rule_hashes()
    assert state.chains["INPUT"][0] is not None and state.chains["INPUT"][1:] == [None]

    table.set_hooks([])
    table.remove_chains(table.chain_names())
    table.apply()
    leftover = runner.inner.run([tool(version, backend, "-save"), "-t", "filter"]).stdout
    assert "cali" not in leftover and "-A INPUT -p tcp" in leftover


def _restorable(section: str) -> tuple[str, set[str]]:
    """Declare chains the golden jumps to but does not define; list the IP sets it needs."""
    declared = set(re.findall(r"^:(\S+)", section, re.M))
    targets = set(re.findall(r" -[jg] (cali-\S+)", section))
    stubs = "".join(f":{name} - [0:0]\n" for name in sorted(targets - declared))
    head, _, body = section.partition("\n")
    return f"{head}\n{stubs}{body}", set(re.findall(r"--match-set (\S+)", section))


@pytest.mark.parametrize("backend", ["nft", "legacy"])
@pytest.mark.parametrize("golden", sorted(p.name for p in GOLDEN_DIR.glob("*.txt")))
def test_golden_files_are_valid_restore_input(netns: Namespaces, golden: str, backend: str) -> None:
    ns = netns.add("g")
    runner = Runner(netns=ns)
    text = (GOLDEN_DIR / golden).read_text()
    for family, section in re.findall(r"# IPv(\d)\n(\*.*?COMMIT\n)", text, re.S):
        restore_text, set_names = _restorable(section)
        for name in sorted(set_names):
            set_type = "hash:ip,port" if name[6:8] == "n:" else "hash:net"
            inet = "inet" if family == "4" else "inet6"
            runner.run(["ipset", "-exist", "create", name, set_type, "family", inet])
        runner.run([tool(int(family), backend, "-restore"), "--noflush"], stdin=restore_text)
