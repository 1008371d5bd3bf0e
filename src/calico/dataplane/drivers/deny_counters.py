"""Packets and bytes each rendered deny rule dropped, from the kernel's own rule counters.

Felix never resets them: a chain that did not change is not rewritten (iptables_table), so
its counters run from the chain's last rewrite. Attribution needs no state of Felix's: every
policy and profile chain's first rule carries the comment "Policy <id> ingress|egress" or
"Profile <id> ...", and the endpoint chains' defaults say "End of tier <tier>. Drop if no
policies passed packet" and "Drop if no profiles matched" (rules/policy.py, endpoints.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from calico.dataplane.drivers.iptables_table import tool
from calico.programs import CommandRunner
from calico.rules import naming

DenyKey = tuple[str, str, str]  # kind, name, direction
DenyCounts = dict[DenyKey, tuple[int, int]]  # packets, bytes

_COUNTED_RULE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+) (.*)$")
_COMMENT = re.compile(r'--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))')
_TARGET = re.compile(r"(?:^|\s)-j (\S+)")
_OWNER = re.compile(r"^(Policy|Profile) (.+) (ingress|egress)$")
_END_OF_TIER = re.compile(r"^End of tier (.+)\. \w+ if no policies passed packet$")
_NO_PROFILE = re.compile(r"^\w+ if no profiles matched$")
_RULE_CHAINS = {
    naming.POLICY_INBOUND_PFX: "ingress",
    naming.POLICY_OUTBOUND_PFX: "egress",
    naming.PROFILE_INBOUND_PFX: "ingress",
    naming.PROFILE_OUTBOUND_PFX: "egress",
}
# Which way the endpoint chains point, seen from the endpoint (as policy directions are).
_ENDPOINT_CHAINS = {
    naming.WORKLOAD_TO_PFX: "ingress",
    naming.WORKLOAD_FROM_PFX: "egress",
    naming.HOST_FROM_PFX: "ingress",
    naming.HOST_TO_PFX: "egress",
    naming.HOST_FROM_FORWARD_PFX: "ingress",
    naming.HOST_TO_FORWARD_PFX: "egress",
}
DENY_TARGETS = frozenset({"DROP", "REJECT"})


def parse_deny_counters(save_text: str, into: DenyCounts | None = None) -> DenyCounts:
    """Sums the counters of deny rules in an `iptables-save -c` text, per owner."""
    counts: DenyCounts = {} if into is None else into
    owners: dict[str, tuple[str, str, str]] = {}
    for line in save_text.splitlines():
        found = _COUNTED_RULE.match(line)
        if found is None:
            continue
        packets, octets, chain, rest = found.groups()
        comments = [q if q is not None else bare for q, bare in _COMMENT.findall(rest)]
        key = _owner(chain, comments, owners)
        target = _TARGET.search(rest)
        if key is None or target is None or target.group(1) not in DENY_TARGETS:
            continue
        old = counts.get(key, (0, 0))
        counts[key] = (old[0] + int(packets), old[1] + int(octets))
    return counts


def _owner(
    chain: str, comments: Iterable[str], owners: dict[str, tuple[str, str, str]]
) -> DenyKey | None:
    """The policy or profile a chain's rules belong to (named by its first rule), or the
    endpoint default a rule in an endpoint chain stands for."""
    for prefix, direction in _RULE_CHAINS.items():
        if chain.startswith(prefix):
            if chain not in owners:
                for comment in comments:
                    found = _OWNER.match(comment)
                    if found:
                        owners[chain] = (found.group(1).lower(), found.group(2), direction)
            return owners.get(chain)
    for prefix, direction in _ENDPOINT_CHAINS.items():
        if chain.startswith(prefix):
            for comment in comments:
                found = _END_OF_TIER.match(comment)
                if found:
                    return ("end-of-tier", found.group(1), direction)
                if _NO_PROFILE.match(comment):
                    return ("no-profile", "", direction)
            return None
    return None


def read_deny_counters(
    runner: CommandRunner, backend: str, ip_versions: Iterable[int]
) -> DenyCounts:
    """Both families' counters summed: one `iptables-save -c` per family."""
    counts: DenyCounts = {}
    for version in ip_versions:
        out = runner.run([tool(version, backend, "save"), "-c"]).stdout
        parse_deny_counters(out, counts)
    return counts
