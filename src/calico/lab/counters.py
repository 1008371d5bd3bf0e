"""The plain router's VXLAN counters: nftables rules in the router's namespace (the lab's own).

They count UDP packets to the VXLAN port that the router forwards from one rack to another
(`routed`: encapsulated traffic between subnets) and that one of its rack bridges passes
between two machines of that rack (`bridged`: encapsulated traffic within a subnet). Tests
and `calico lab status` read them to tell encapsulated traffic from native. The rules only
count (policy accept): the router still forwards everything.

br_netfilter (often loaded, and on in new namespaces) runs bridged IPv4/IPv6 packets through
the inet forward hook as well, with the bridge as both input and output: a routed packet is
one whose output bridge differs from its input bridge, hence a rule per bridge.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from calico.lab import netns
from calico.model.vxlan import DEFAULT_PORT

TABLE = "calico-lab"
ROUTED = "vxlan-routed"
BRIDGED = "vxlan-bridged"


@dataclass(frozen=True, slots=True)
class VxlanCounts:
    """Packets to the VXLAN port the router saw, IPv4 and IPv6 together."""

    routed: int  # forwarded between racks
    bridged: int  # passed within a rack


def ruleset(bridges: Sequence[str], port: int = DEFAULT_PORT) -> str:
    """The nft script creating both tables (a fresh namespace has no ruleset)."""
    routed = "".join(
        f'    iifname "{b}" oifname != "{b}" udp dport {port} counter name "{ROUTED}"\n'
        for b in bridges
    )
    hook = "type filter hook forward priority 0; policy accept;"
    return (
        f"table inet {TABLE} {{\n  counter {ROUTED} {{}}\n"
        f"  chain forward {{\n    {hook}\n{routed}  }}\n}}\n"
        f"table bridge {TABLE} {{\n  counter {BRIDGED} {{}}\n"
        f'  chain forward {{\n    {hook}\n    udp dport {port} counter name "{BRIDGED}"\n  }}\n}}\n'
    )


def install(ns: str, bridges: Sequence[str]) -> None:
    netns.in_ns(ns, ["nft", "-f", "-"], stdin=ruleset(bridges))


def read(ns: str) -> VxlanCounts:
    out = netns.in_ns(ns, ["nft", "-j", "list", "counters"]).stdout
    packets = {
        item["counter"]["name"]: int(item["counter"]["packets"])
        for item in json.loads(out)["nftables"]
        if "counter" in item and item["counter"]["table"] == TABLE
    }
    return VxlanCounts(packets[ROUTED], packets[BRIDGED])
