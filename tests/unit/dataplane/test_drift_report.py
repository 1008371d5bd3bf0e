"""Dry-run classification of commands, and drift items from recorded writes and reads."""

from __future__ import annotations

import pytest

from calico.dataplane.drift_report import Drift, drift_items, render_text
from calico.dataplane.dry_run import DryRunRunner, Write, is_read
from calico.programs import CommandResult


@pytest.mark.parametrize(
    ("argv", "stdin", "read"),
    [
        (["iptables-nft-save", "-t", "filter"], None, True),
        (["ip6tables-legacy-restore", "--noflush"], "x", False),
        (["ipset", "save"], None, True),
        (["ipset", "-exist", "restore"], "add a b", False),
        (["sysctl", "net.ipv4.ip_forward"], None, True),
        (["sysctl", "-w", "net.ipv4.ip_forward=1"], None, False),
        (["ip", "-j", "-N", "-4", "-batch", "-"], "link show\nroute show table 254\n", True),
        (["ip", "-4", "-force", "-batch", "-"], "route replace 198.18.0.1/32 dev cali1\n", False),
        (["ip", "-4", "-j", "addr", "show", "to", "198.18.0.1/32"], None, True),
        (["ip", "link", "add", "vxlan.calico", "type", "vxlan"], None, False),
        (["bridge", "-j", "fdb", "show", "dev", "vxlan.calico"], None, True),
        (["bridge", "-batch", "-"], "fdb replace ...", False),
        (["conntrack", "--family", "ipv4", "--delete", "--orig-src", "198.18.0.1"], None, False),
        (["somethingelse"], None, False),  # unknown: a write, never run
    ],
)
def test_reads_run_and_everything_else_is_recorded(
    argv: list[str], stdin: str | None, read: bool
) -> None:
    assert is_read(argv, stdin) is read


class Kernel:
    def __init__(self) -> None:
        self.ran: list[list[str]] = []

    def run(
        self, args: list[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        self.ran.append(list(args))
        return CommandResult(0, "out", "")


def test_dry_run_runner_runs_reads_only() -> None:
    kernel = Kernel()
    runner = DryRunRunner(kernel)
    assert runner.run(["ipset", "save"]).stdout == "out"
    assert runner.run(["ipset", "-exist", "restore"], stdin="add s 1").stdout == ""
    assert kernel.ran == [["ipset", "save"]]
    assert runner.writes == [Write(("ipset", "-exist", "restore"), "add s 1")]
    assert runner.reads == {("ipset", "save"): "out"}


SAVE = """*filter
:INPUT ACCEPT [0:0]
:cali-tw-cali1 - [0:0]
-A INPUT -m comment --comment "cali:hookA" -j cali-INPUT
-A INPUT -s 198.18.9.9/32 -j ACCEPT
-A cali-tw-cali1 -m comment --comment "cali:r1" -j ACCEPT
-A cali-tw-cali1 -j DROP
COMMIT
"""
RESTORE = """*filter
:cali-tw-cali1 - [0:0]
-A cali-tw-cali1 -m comment --comment "cali:r1" -j ACCEPT
-A cali-tw-cali1 -m comment --comment "cali:r2" -j RETURN
:cali-new - [0:0]
-A cali-new -m comment --comment "cali:n1" -j DROP
-X cali-stale
COMMIT
"""


def test_chains_are_compared_by_rule_hash() -> None:
    items = drift_items(
        [Write(("iptables-nft-restore", "--noflush", "--wait"), RESTORE)],
        {("iptables-nft-save",): SAVE},
    )
    assert items == [
        Drift("iptables", "v4 filter cali-new", missing=(
            "the whole chain", '-A cali-new -m comment --comment "cali:n1" -j DROP',
        )),
        Drift("iptables", "v4 filter cali-tw-cali1",
              missing=('-A cali-tw-cali1 -m comment --comment "cali:r2" -j RETURN',),
              unexpected=("-A cali-tw-cali1 -j DROP",)),
        Drift("iptables", "v4 filter cali-stale", unexpected=("the whole chain",)),
    ]  # fmt: skip


def test_sets_routes_and_sysctls() -> None:
    writes = [
        Write(("ipset", "-exist", "restore"), "del cali40s:a 198.18.0.9\nadd cali40s:a 198.18.0.1\n"
              "create cali4ts:b hash:net family inet\nadd cali4ts:b 198.18.1.0/24\n"
              "swap cali4ts:b cali40s:b\ndestroy cali4ts:b\ndestroy cali40s:old\n"),
        Write(("ip", "-4", "-batch", "-"), "route replace 198.18.0.2/32 dev cali2\n"
              "route del 198.18.0.7/32 dev cali7\n"),
        Write(("sysctl", "-w", "net.ipv4.conf.cali1.proxy_arp=1", "net.ipv4.conf.cali1.forwarding=1")),
    ]  # fmt: skip
    reads = {
        ("ipset", "save"): "create cali40s:b hash:net\nadd cali40s:b 198.18.2.0/24\n"
        "create cali40s:old hash:net\n",
        ("sysctl", "net.ipv4.conf.cali1.proxy_arp"): "net.ipv4.conf.cali1.proxy_arp = 0\n"
        "net.ipv4.conf.cali1.forwarding = 1\n",
    }
    items = drift_items(writes, reads)
    assert items == [
        Drift("ipset", "cali40s:b", ("198.18.1.0/24",), ("198.18.2.0/24",)),
        Drift("ipset", "cali40s:a", ("198.18.0.1",), ("198.18.0.9",)),
        Drift("ipset", "cali40s:old", unexpected=("the whole set",)),
        Drift("route", "198.18.0.2/32", missing=("198.18.0.2/32 dev cali2",)),
        Drift("route", "198.18.0.7/32", unexpected=("198.18.0.7/32 dev cali7",)),
        Drift("sysctl", "net.ipv4.conf.cali1.proxy_arp", ("net.ipv4.conf.cali1.proxy_arp=1",)),
    ]
    assert render_text(items[3:4]) == "route 198.18.0.2/32:\n  + 198.18.0.2/32 dev cali2\n"
    assert drift_items([], {}) == [] and render_text([]) == ""
