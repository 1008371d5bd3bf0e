"""Dispatch chains: interface name -> the endpoint's own chain.

Inputs: the local endpoints' interface names. Outputs: `cali-from-wl-dispatch` /
`cali-to-wl-dispatch` for workloads, `cali-from-host-endpoint` / `cali-to-host-endpoint` (and
the `-hep-forward` pair) for host endpoints, per table.

Shape (felix/rules/dispatch.go): names are sorted (so output does not depend on arrival
order); after their common prefix, names are binned by their next character. A bin of one
name becomes a direct `-i/-o <iface> -g <endpoint chain>` rule in the root chain; a larger
bin becomes `-i/-o <prefix>+ -g <root>-<char>` and a child chain holding its names; unlike
Felix, a bin of more than 16 names is split again the same way (child `<root>-<chars>`), so
a packet crosses O(log n) short chains rather than one chain of n/16 rules. Root and child
chains end with the same end rules: for workloads DROP "Unknown interface" -- the root is only
entered for interfaces with a workload prefix, so an interface Felix does not know (yet, or
any more) is dropped, also while Felix is down. Host endpoint dispatch has no such drop:
traffic on an interface without a host endpoint is not Calico's to police, except via the
wildcard host endpoint ("*"), whose chains then catch everything else.

Always install the dispatch chains, even with no endpoints: the static chains jump to them
and a missing chain becomes a drop-all stub in the table driver.

A `DispatchMemo` passed to successive builds hands back the child chains of the previous
build whose names did not change, so adding one endpoint builds only the chains on its path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from calico.rules import naming
from calico.rules.config import RulesConfig
from calico.rules.model import ANY, RETURN, Chain, Goto, Match, Rule, verdict

IfaceMatch = Callable[[str], Match]
MAX_LEAF_ENDPOINTS = 16


def _in(name: str) -> Match:
    return ANY.in_iface(name)


def _out(name: str) -> Match:
    return ANY.out_iface(name)


class DispatchMemo:
    """Child chains of one caller's previous build, by everything they are made from."""

    def __init__(self) -> None:
        self._previous: dict[object, list[Chain]] = {}
        self._current: dict[object, list[Chain]] = {}

    def get(self, key: object, build: Callable[[], list[Chain]]) -> list[Chain]:
        chains = self._previous.get(key)
        if chains is None:
            chains = build()
        self._current[key] = chains
        return chains

    def build_done(self) -> None:
        """Keep only what the build just finished used."""
        self._previous, self._current = self._current, {}


def workload_dispatch_chains(
    cfg: RulesConfig, iface_names: Iterable[str], memo: DispatchMemo | None = None
) -> list[Chain]:
    """`cali-from-wl-dispatch` and `cali-to-wl-dispatch` trees (with child chains)."""
    names = sorted(set(iface_names))
    deny = verdict(cfg.filter_deny_action)
    end = (Rule(action=deny, comment=("Unknown interface",)),)
    memo = memo or DispatchMemo()
    chains = [
        *_dispatch_tree(
            naming.CHAIN_FROM_WL_DISPATCH, names, naming.WORKLOAD_FROM_PFX, _in, end, memo
        ),
        *_dispatch_tree(
            naming.CHAIN_TO_WL_DISPATCH, names, naming.WORKLOAD_TO_PFX, _out, end, memo
        ),
    ]
    memo.build_done()
    return chains


def host_filter_dispatch_chains(iface_names: Iterable[str]) -> list[Chain]:
    """Filter table: from/to host endpoint dispatch plus the apply-on-forward pair.

    `iface_names` may include "*" (the wildcard host endpoint): it becomes the default for
    interfaces without their own host endpoint.
    """
    names, default = _split_default(iface_names)
    return [
        *_host_tree(naming.CHAIN_FROM_HOST_ENDPOINT, names, naming.HOST_FROM_PFX, _in, default),
        *_host_tree(naming.CHAIN_TO_HOST_ENDPOINT, names, naming.HOST_TO_PFX, _out, default),
        *_host_tree(
            naming.CHAIN_FROM_HEP_FORWARD, names, naming.HOST_FROM_FORWARD_PFX, _in, default
        ),
        *_host_tree(naming.CHAIN_TO_HEP_FORWARD, names, naming.HOST_TO_FORWARD_PFX, _out, default),
    ]


def host_raw_dispatch_chains(cfg: RulesConfig, iface_names: Iterable[str]) -> list[Chain]:
    """Raw table (untracked policy): from/to host endpoint dispatch."""
    names, default = _split_default(iface_names)
    return [
        *_host_tree(naming.CHAIN_FROM_HOST_ENDPOINT, names, naming.HOST_FROM_PFX, _in, default),
        *_to_host_tree(cfg, names, default),
    ]


def host_mangle_dispatch_chains(
    cfg: RulesConfig, pre_dnat_ifaces: Iterable[str], egress_ifaces: Iterable[str]
) -> list[Chain]:
    """Mangle table: pre-DNAT ingress dispatch, and egress dispatch for DNATed host traffic."""
    pre_names, pre_default = _split_default(pre_dnat_ifaces)
    out_names, out_default = _split_default(egress_ifaces)
    return [
        *_host_tree(
            naming.CHAIN_FROM_HOST_ENDPOINT, pre_names, naming.HOST_FROM_PFX, _in, pre_default
        ),
        *_to_host_tree(cfg, out_names, out_default),
    ]


def _split_default(iface_names: Iterable[str]) -> tuple[list[str], bool]:
    names = set(iface_names)
    has_default = "*" in names
    names.discard("*")
    return sorted(names), has_default


def _to_host_tree(cfg: RulesConfig, names: list[str], default: bool) -> list[Chain]:
    """Egress dispatch outside the filter table, where cali-OUTPUT's early return for
    traffic to local workloads does not exist: the wildcard host endpoint must skip it."""
    skip = tuple(
        Rule(
            ANY.out_iface(prefix + "+"),
            RETURN,
            ("Skip egress WHEP policy for traffic to local workload",),
        )
        for prefix in cfg.workload_iface_prefixes
        if default
    )
    return _host_tree(naming.CHAIN_TO_HOST_ENDPOINT, names, naming.HOST_TO_PFX, _out, default, skip)


def _host_tree(
    root: str,
    names: Sequence[str],
    endpoint_prefix: str,
    iface: IfaceMatch,
    default: bool,
    before_default: tuple[Rule, ...] = (),
) -> list[Chain]:
    end = before_default
    if default:
        end += (Rule(action=Goto(naming.endpoint_chain_name(endpoint_prefix, "*"))),)
    return _dispatch_tree(root, names, endpoint_prefix, iface, end)


def _dispatch_tree(
    root: str,
    names: Sequence[str],
    endpoint_prefix: str,
    iface: IfaceMatch,
    end: tuple[Rule, ...],
    memo: DispatchMemo | None = None,
) -> list[Chain]:
    """Child chains first, then the root chain; `names` must be sorted and unique."""
    tree = _Tree(root, endpoint_prefix, iface, end, memo or DispatchMemo())
    return tree.node(root, names, _common_prefix(names))


@dataclass(frozen=True, slots=True)
class _Tree:
    root: str
    endpoint_prefix: str
    iface: IfaceMatch
    end: tuple[Rule, ...]
    memo: DispatchMemo = field(compare=False)

    def node(self, chain: str, names: Sequence[str], top_common: str) -> list[Chain]:
        """Felix's prefix bins, recursing into bins too big for one chain."""
        common = _common_prefix(names)
        bins: dict[str, list[str]] = {}
        for name in names:
            bins.setdefault(name[: len(common) + 1], []).append(name)
        chains: list[Chain] = []
        rules: list[Rule] = []
        for key, members in bins.items():
            if len(members) == 1:
                rules.append(self.to_endpoint(members[0]))
                continue
            child = naming.length_limited(f"{self.root}-", key[len(top_common) :])
            rules.append(Rule(self.iface(key + "+"), Goto(child)))
            memo_key = (self, child, tuple(members), top_common)
            chains += self.memo.get(memo_key, partial(self.child, child, members, top_common))
        return [*chains, Chain(chain, (*rules, *self.end))]

    def child(self, chain: str, names: Sequence[str], top_common: str) -> list[Chain]:
        if len(names) > MAX_LEAF_ENDPOINTS:
            return self.node(chain, names, top_common)
        return [Chain(chain, (*(self.to_endpoint(m) for m in names), *self.end))]

    def to_endpoint(self, name: str) -> Rule:
        return Rule(self.iface(name), Goto(naming.endpoint_chain_name(self.endpoint_prefix, name)))


def _common_prefix(sorted_names: Sequence[str]) -> str:
    """For sorted strings, the first and last bound everyone's common prefix."""
    if not sorted_names:
        return ""
    first, last = sorted_names[0], sorted_names[-1]
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]
