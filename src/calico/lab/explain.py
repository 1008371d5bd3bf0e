"""Which of Calico's iptables rules a probe's packets hit, from the kernel's own counters.

Every rule Felix writes carries its ID as the first comment (`cali:<hash>`). The hosts'
raw, mangle, nat and filter tables are saved with counters (`iptables-save -c`, both backends:
only the one Felix picked holds Calico's rules) before and after the probe; the rules whose
packet counter moved are what the probe's packets (and anything else the host carried at
the same moment) went through, in the order the tables print them. `calicoctl policy trace`
names its deciding rule, and each NAT rule that translated the packet, by the same ID, so
the two can be compared (a nat rule counts a connection's first packet only).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass
from typing import Any

from calico.lab import netns

TABLES = ("raw", "mangle", "nat", "filter")
BACKENDS = ("nft", "legacy")
_RULE = re.compile(r"^\[(\d+):\d+\] -A (\S+) (.*)$")
Counters = dict[tuple[str, str, str], tuple[int, str]]  # (table, chain, id) -> packets, rule


@dataclass(frozen=True, slots=True)
class RuleHit:
    host: str
    table: str
    chain: str
    rule_id: str
    packets: int  # counted during the probe
    rule: str  # as iptables-save prints it, counters and ID comment left out

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"{self.host} {self.table} {self.chain} [{self.rule_id}] +{self.packets}: {self.rule}"
        )


def parse_counters(text: str) -> Counters:
    """Calico's rules (those with a `cali:` ID comment) of an `iptables-save -c` output."""
    counters: Counters = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        found = _RULE.match(line)
        if found is None:
            continue
        packets, chain, rest = int(found.group(1)), found.group(2), found.group(3)
        words = shlex.split(rest)
        rule_id = _rule_id(words)
        if rule_id is not None:
            counters[table, chain, rule_id] = (packets, _without_id(rest, rule_id))
    return counters


def _rule_id(words: list[str]) -> str | None:
    for i, word in enumerate(words[:-1]):
        if word == "--comment" and words[i + 1].startswith("cali:"):
            return words[i + 1][len("cali:") :]
    return None


def _without_id(rule: str, rule_id: str) -> str:
    for quoted in (f'"cali:{rule_id}"', f"cali:{rule_id}"):
        rule = rule.replace(f"-m comment --comment {quoted} ", "", 1)
    return rule


def read_counters(ns: str, ip_version: int) -> Counters:
    counters: Counters = {}
    tool = "ip6tables" if ip_version == 6 else "iptables"
    for backend in BACKENDS:
        for table in TABLES:
            proc = netns.in_ns(ns, [f"{tool}-{backend}-save", "-c", "-t", table], check=False)
            if proc.returncode == 0:
                counters.update(parse_counters(proc.stdout))
    return counters


def moved(host: str, before: Counters, after: Counters) -> list[RuleHit]:
    """The rules whose packet counter grew, in the order `after` lists them."""
    hits = []
    for (table, chain, rule_id), (packets, rule) in after.items():
        delta = packets - before.get((table, chain, rule_id), (0, ""))[0]
        if delta > 0:
            hits.append(RuleHit(host, table, chain, rule_id, delta, rule))
    return hits
