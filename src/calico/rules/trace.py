"""Policy trace: would a packet from A to B be allowed, and which policy rule decided (pure).

Inputs: per host, the messages the calculation graph sent that host's Felix (`HostState`
folds them: IP sets, active policies and profiles, local endpoints) and a `Flow`. Output:
a `Trace` with one `Hop` per host the packet is policed on: egress on the source's host,
ingress on the destination's (an external end has no hop).

The hop's tables are rendered by the same `calico.rules` functions the dataplane managers
use, and the packet is walked through them by `packet_walk` (the same rule text iptables
is given), so the trace cannot disagree with what Felix programs. The explanation is then
read back from the walk: for each endpoint chain entered, its tiers, each policy the
endpoint's chain jumps to and the rule that decided (the Calico rule index is recovered
by rendering each rule alone, as the chain was rendered), and the default that applied.

A hop is walked from the workload's interface to the host's uplink (egress) or back
(ingress); two workloads on one host are one walk, workload to workload, as in the kernel,
read as two hops (an ingress side the packet never reached is walked alone).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from calico.calc.messages import PolicyID, TierInfo, WorkloadEndpointID
from calico.rules import naming
from calico.rules.config import RulesConfig
from calico.rules.model import Jump, Rule, SetMark, Verdict
from calico.rules.packet_walk import Packet, Step, Walk, walk
from calico.rules.trace_tables import (
    Considered,
    EndpointChain,
    HostState,
    HostTables,
    policy_name,
    render,
)


@dataclass(frozen=True, slots=True)
class End:
    """One end of the flow: a workload (host, id, interface) or an external address."""

    address: str
    host: str | None = None
    workload: WorkloadEndpointID | None = None
    iface: str | None = None


@dataclass(frozen=True, slots=True)
class Flow:
    src: End
    dst: End
    protocol: int
    dst_port: int | None = None
    src_port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None

    @property
    def ip_version(self) -> int:
        return ipaddress.ip_address(self.src.address).version


_DECISION_KEYS = (
    "what",
    "action",
    "tier",
    "policy",
    "profile",
    "rule_index",
    "chain",
    "rule",
    "rule_id",
)


@dataclass(frozen=True, slots=True)
class Decision:
    """What decided: a policy's or profile's rule, or a default (`what` says which)."""

    what: str  # "policy", "profile", "end of tier", "no profile matched", "rule"...
    action: str  # Allow, Deny, Pass, Log
    chain: str
    rule: str  # the iptables rule as rendered
    tier: str | None = None
    policy: str | None = None
    profile: str | None = None
    rule_index: int | None = None
    rule_id: str | None = None  # the rule's cali:<hash> comment in the kernel

    def to_json(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in _DECISION_KEYS if getattr(self, k) is not None}


@dataclass(frozen=True, slots=True)
class PolicyResult:
    name: str  # tier-qualified policy, or profile
    reached: bool
    decision: Decision | None  # None: no rule matched (on to the next)
    logged: tuple[int, ...] = ()  # Log rules that matched
    selected: bool = True  # its selector matches the endpoint (and it has this direction)


@dataclass(frozen=True, slots=True)
class EndpointResult:
    endpoint: str
    table: str
    chain: str
    direction: str  # ingress | egress
    tiers: tuple[tuple[str, tuple[PolicyResult, ...]], ...]
    profiles: tuple[PolicyResult, ...]
    decision: Decision | None


@dataclass(frozen=True, slots=True)
class Hop:
    host: str
    direction: str  # egress (source's host) | ingress (destination's host)
    verdict: str  # allow | deny
    decision: Decision | None
    endpoints: tuple[EndpointResult, ...]


@dataclass(frozen=True, slots=True)
class Trace:
    verdict: str
    hops: tuple[Hop, ...]


# -- the trace ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostInput:
    """One host: what its Felix was told, its rule settings, the interface it routes
    off-host traffic to."""

    state: HostState
    cfg: RulesConfig
    uplink: str


def trace(hosts: Mapping[str, HostInput], flow: Flow, considered: Considered) -> Trace:
    """`hosts` by name: at least the hosts of the flow's workload ends."""
    return trace_rendered(hosts, render_hosts(hosts, flow.ip_version, considered), flow)


def render_hosts(
    hosts: Mapping[str, HostInput], ip_version: int, considered: Considered
) -> dict[str, HostTables]:
    """Each host's tables of one IP family, rendered once for any number of flows."""
    return {name: render(h.cfg, h.state, ip_version, considered) for name, h in hosts.items()}


def trace_rendered(
    hosts: Mapping[str, HostInput], rendered: Mapping[str, HostTables], flow: Flow
) -> Trace:
    """`trace` over tables `render_hosts` made for the flow's IP family."""
    states = {name: h.state for name, h in hosts.items()}
    src, dst = flow.src, flow.dst
    if src.host is not None and src.host == dst.host:
        return _same_host(hosts[src.host], rendered[src.host], src.host, flow, states)
    hops = []
    if src.host is not None:
        out = _walk(rendered[src.host], flow, src.iface or "", hosts[src.host].uplink, states)
        hops.append(_hop(hosts[src.host].cfg, rendered[src.host], src.host, "egress", out))
    if dst.host is not None:
        out = _walk(rendered[dst.host], flow, hosts[dst.host].uplink, dst.iface or "", states)
        hops.append(_hop(hosts[dst.host].cfg, rendered[dst.host], dst.host, "ingress", out))
    verdict = "allow" if all(h.verdict == "allow" for h in hops) else "deny"
    return Trace(verdict, tuple(hops))


def _same_host(
    host: HostInput, tables: HostTables, name: str, flow: Flow, states: Mapping[str, HostState]
) -> Trace:
    """One walk, workload to workload, as the kernel does it, read as two hops. If the
    egress side drops, the ingress side is walked alone (from the uplink) to answer it too."""
    real = _walk(tables, flow, flow.src.iface or "", flow.dst.iface or "", states)
    ingress = _hop(host.cfg, tables, name, "ingress", real, only="ingress")
    reached = bool(ingress.endpoints)
    egress_verdict = "allow" if reached or real.verdict == "ACCEPT" else "deny"
    egress = _hop(host.cfg, tables, name, "egress", real, only="egress", verdict=egress_verdict)
    if not reached:
        alone = _walk(tables, flow, host.uplink, flow.dst.iface or "", states)
        ingress = _hop(host.cfg, tables, name, "ingress", alone, only="ingress")
    return Trace("allow" if real.verdict == "ACCEPT" else "deny", (egress, ingress))


def _walk(
    host: HostTables, flow: Flow, in_iface: str, out_iface: str, states: Mapping[str, HostState]
) -> Walk:
    packet = Packet(
        flow.ip_version,
        flow.src.address,
        flow.dst.address,
        flow.protocol,
        src_port=flow.src_port,
        dst_port=flow.dst_port,
        icmp_type=flow.icmp_type,
        icmp_code=flow.icmp_code,
        in_iface=in_iface,
        out_iface=out_iface,
        rpf_ok=_rpf_ok(flow, states),
    )
    return walk(host.tables, packet)


def _rpf_ok(flow: Flow, states: Mapping[str, HostState]) -> bool:
    """The strict reverse-path check: a workload's source address must route back to it."""
    src = flow.src
    if src.host is None or src.workload is None:
        return True
    wep = states[src.host].workloads.get(src.workload)
    if wep is None:
        return False
    addr = ipaddress.ip_address(src.address)
    nets = (*wep.ipv4_nets, *wep.ipv6_nets, *wep.allow_spoofed_source_prefixes)
    return any(addr in ipaddress.ip_network(n, strict=False) for n in nets)


def _hop(
    cfg: RulesConfig,
    host: HostTables,
    name: str,
    direction: str,
    result: Walk,
    *,
    only: str | None = None,
    verdict: str | None = None,
) -> Hop:
    """`only`: keep the endpoint chains of that direction (one walk read as two hops), whose
    `verdict` the caller then knows better than the walk's."""
    explainer = _Explainer(cfg, host)
    for frame in result.frames:
        explainer.visit(frame.table, frame.steps, frame.chain)
    verdict = verdict or ("allow" if result.verdict == "ACCEPT" else "deny")
    decision = explainer.last_drop if verdict == "deny" else explainer.last_allow
    endpoints = [e for e in explainer.endpoints if only in (None, e.direction)]
    if only is not None:
        action = "Deny" if verdict == "deny" else "Allow"
        own = [e.decision for e in endpoints if e.decision and e.decision.action == action]
        decision = own[-1] if own else decision
    return Hop(name, direction, verdict, decision, tuple(endpoints))


class _Explainer:
    """Reads a walk back into endpoints, tiers, policies and the rule that decided."""

    def __init__(self, cfg: RulesConfig, host: HostTables) -> None:
        self.cfg, self.host = cfg, host
        self.endpoints: list[EndpointResult] = []
        self.last_drop: Decision | None = None
        self.last_allow: Decision | None = None

    def visit(self, table: str, steps: list[Step], chain: str) -> None:
        """Depth first; endpoint chains are explained where they are met."""
        for step in steps:
            if step.matched and isinstance(step.rule.action, Verdict):
                target = step.rule.action.target
                if target in ("DROP", "REJECT"):
                    self.last_drop = self._default(table, chain, step, "Deny")
            child = step.child
            if child is None:
                continue
            spec = self.host.endpoint_chains.get((table, child.chain))
            if spec is not None:
                self.endpoints.append(self._endpoint(table, child.chain, child.steps, spec))
            else:
                self.visit(table, child.steps, child.chain)

    def _endpoint(
        self, table: str, chain: str, steps: list[Step], spec: EndpointChain
    ) -> EndpointResult:
        jumps = {
            s.rule.action.chain: s
            for s in steps
            if s.matched and isinstance(s.rule.action, Jump) and s.child is not None
        }
        tiers = []
        decision: Decision | None = None
        for tier_name, pids, selected in _considered_tiers(spec):
            results = []
            for pid in pids:
                if pid not in selected:
                    results.append(PolicyResult(policy_name(pid), False, None, selected=False))
                    continue
                chain_name = naming.policy_chain_name(pid, inbound=spec.inbound)
                result = self._policy(jumps.get(chain_name), chain_name, tier_name, "policy")
                results.append(result)
                decision = result.decision or decision
            tiers.append((tier_name, tuple(results)))
        profiles = []
        for prof_id in spec.profile_ids:
            chain_name = naming.profile_chain_name(prof_id, inbound=spec.inbound)
            result = self._policy(jumps.get(chain_name), chain_name, None, "profile")
            profiles.append(result)
            decision = result.decision or decision
        # A drop in the endpoint chain itself: a default (end of tier, no profile...).
        for step in steps:
            if step.matched and step.rule.action in (Verdict("DROP"), Verdict("REJECT")):
                decision = self._default(table, chain, step, "Deny")
            elif step.matched and step.rule.comment[:1] == ("Allow forwarded traffic by default",):
                decision = self._default(table, chain, step, "Allow")
            elif (
                step.matched
                and step.child is not None
                and step.child.chain.startswith(naming.CHAIN_FAILSAFE_IN[:-2])
            ):
                accepted = [s for s in step.child.steps if s.matched]
                if accepted:
                    failsafe = step.child.chain
                    decision = self._default(table, failsafe, accepted[-1], "Allow", "failsafe")
        if decision is not None:
            if decision.action == "Deny":
                self.last_drop = decision
            elif decision.action == "Allow":
                self.last_allow = decision
        direction = "ingress" if spec.inbound else "egress"
        return EndpointResult(
            spec.label, table, chain, direction, tuple(tiers), tuple(profiles), decision
        )

    def _policy(self, jump: Step | None, chain: str, tier: str | None, kind: str) -> PolicyResult:
        name, owners = self.host.owners.get(chain, (chain, ()))
        if jump is None or jump.child is None:
            return PolicyResult(name, False, None)
        decision: Decision | None = None
        logged = []
        for step in jump.child.steps:
            action = step.rule.action
            if not step.matched or action is None:
                continue
            verb = self._verb(step.rule)
            if verb is None:
                continue
            index = owners[step.index] if step.index < len(owners) else None
            if verb == "Log":
                logged.append(index if index is not None else -1)
                continue
            decision = Decision(
                kind,
                verb,
                chain,
                step.rule.spec(),
                tier=tier,
                policy=name if kind == "policy" else None,
                profile=name if kind == "profile" else None,
                rule_index=index,
                rule_id=self._rule_id(jump.child.table, chain, step.index),
            )
            break
        return PolicyResult(name, True, decision, tuple(logged))

    def _rule_id(self, table: str, chain: str, index: int) -> str | None:
        """The rule's ID (hash) as the table driver writes it; None in a kernel chain."""
        found = self.host.tables.chains.get(table, {}).get(chain)
        return found.rule_hashes()[index] if found is not None else None

    def _default(self, table: str, chain: str, step: Step, action: str, what: str = "") -> Decision:
        """A decision by a rule of Calico's own (no policy): its comment says which default."""
        rule = step.rule
        rule_id = self._rule_id(table, chain, step.index)
        comment = rule.comment[0] if rule.comment else ""
        if comment.startswith(_END_OF_TIER):
            tier = comment[len(_END_OF_TIER) :].split(". ")[0]
            return Decision("end of tier", action, chain, rule.spec(), tier=tier, rule_id=rule_id)
        what = what or _DEFAULTS.get(comment, "rule")
        return Decision(what, action, chain, rule.spec(), rule_id=rule_id)

    def _verb(self, rule: Rule) -> str | None:
        action = rule.action
        if isinstance(action, SetMark) and action.mask == action.value:
            if action.value == self.cfg.mark_accept:
                return "Allow"
            if action.value == self.cfg.mark_pass:
                return "Pass"
            return None
        if isinstance(action, Verdict) and action.target in ("DROP", "REJECT"):
            return "Deny"
        if action is not None and action.render().startswith("-j LOG"):
            return "Log"
        return None


def _considered_tiers(
    spec: EndpointChain,
) -> list[tuple[str, tuple[PolicyID, ...], frozenset[PolicyID]]]:
    """(tier, every policy of the direction in order, those that select the endpoint).
    Without the whole catalogue (or if it lacks one), only the selecting ones."""

    def direction(tier: TierInfo) -> tuple[PolicyID, ...]:
        return tier.ingress_policies if spec.inbound else tier.egress_policies

    selected = frozenset(p for t in spec.tiers for p in direction(t))
    listed = {p for t in spec.considered for p in direction(t)}
    tiers = spec.considered if selected <= listed else spec.tiers
    return [(t.name, direction(t), selected) for t in tiers if direction(t)]


_END_OF_TIER = "End of tier "
_DEFAULTS = {
    "Drop if no profiles matched": "no profile matched",
    "Reject if no profiles matched": "no profile matched",
    "Allow forwarded traffic by default": "no policy selects the endpoint",
    "Unknown interface": "unknown interface",
    "Endpoint admin disabled": "endpoint admin down",
}


def to_json(result: Trace) -> dict[str, object]:
    def policy(p: PolicyResult) -> dict[str, object]:
        out: dict[str, object] = {"name": p.name, "selected": p.selected, "reached": p.reached}
        if p.reached:
            out["result"] = p.decision.to_json() if p.decision else "no rule matched"
        if p.logged:
            out["logged_rules"] = list(p.logged)
        return out

    def endpoint(e: EndpointResult) -> dict[str, object]:
        return {
            "endpoint": e.endpoint,
            "table": e.table,
            "chain": e.chain,
            "direction": e.direction,
            "tiers": [{"tier": t, "policies": [policy(p) for p in ps]} for t, ps in e.tiers],
            "profiles": [policy(p) for p in e.profiles],
            "decided_by": e.decision.to_json() if e.decision else None,
        }

    return {
        "verdict": result.verdict,
        "hops": [
            {
                "host": h.host,
                "direction": h.direction,
                "verdict": h.verdict,
                "decided_by": h.decision.to_json() if h.decision else None,
                "endpoints": [endpoint(e) for e in h.endpoints],
            }
            for h in result.hops
        ],
    }
