"""Policy trace: would a packet from A to B be allowed, and which policy rule decided (pure).

Inputs: per host, the messages the calculation graph sent that host's Felix (`HostState`
folds them: IP sets, active policies and profiles, local endpoints) and a `Flow`. Output:
a `Trace` with one `Hop` per host the packet is policed on: egress on the source's host,
ingress on the destination's (an external end has no hop). An end is a workload, a host
itself (one of its addresses) or external.

The hop's tables are rendered by the same `calico.rules` functions the dataplane managers
use, and the packet is walked through them by `packet_walk` (the same rule text iptables
is given), so the trace cannot disagree with what Felix programs. The explanation is then
read back from the walk: for each endpoint chain entered, its tiers, each policy the
endpoint's chain jumps to and the rule that decided (the Calico rule index is recovered
by rendering each rule alone, as the chain was rendered), and the default that applied.

A hop is walked from the workload's interface to the host's uplink (egress) or back
(ingress), through PREROUTING and FORWARD (nat included: a hop's DNAT, SNAT or MASQUERADE is
reported, policy after it sees the translated packet, and the next hop gets the packet as
the previous one sent it); two workloads on one host are one walk, workload
to workload, as in the kernel, read as two hops (an ingress side the packet never reached
is walked alone). A host end's hop is its own traffic: to it, from the uplink (or a local
workload's interface) through PREROUTING and INPUT; from it, to the uplink (or a local
workload's interface) through OUTPUT and POSTROUTING. A local workload and its host are
one walk and one hop: the workload's egress, then DefaultEndpointToHostAction (to the host)
or nothing (from the host: Felix does not police it).

The kernel routes after nat PREROUTING (OUTPUT), the trace plans each walk's interfaces from
the flow's ends: a destination a nat table moves anywhere but to the planned end (a floating
IP its host does not translate, the metadata DNAT) is a `WalkError` naming the rule.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace

from calico.calc.messages import PolicyID, TierInfo, WorkloadEndpointID
from calico.rules import naming
from calico.rules.config import RulesConfig
from calico.rules.endpoints import is_policy_group
from calico.rules.model import Jump, Rule, SetMark, Verdict
from calico.rules.nat import endpoint_nats
from calico.rules.packet_walk import (
    FORWARD_PATH,
    INPUT_PATH,
    OUTPUT_PATH,
    Packet,
    Path,
    Step,
    Translation,
    Walk,
    WalkError,
    walk,
)
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
    """One end of the flow: a workload (host, id, interface), a host itself (host, no
    workload) or an external address (neither)."""

    address: str
    host: str | None = None
    workload: WorkloadEndpointID | None = None
    iface: str | None = None

    @property
    def is_host(self) -> bool:
        return self.host is not None and self.workload is None


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
    "table",
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
    table: str | None = None

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
class Nat:
    """An address translation a hop's nat table made (the rule that made it)."""

    kind: str  # DNAT, SNAT, MASQUERADE
    field: str  # destination | source
    original: str
    translated: str | None  # None: MASQUERADE's, the outgoing interface's address
    chain: str
    rule: str
    rule_id: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "type": self.kind,
            "field": self.field,
            "original": self.original,
            "translated": self.translated,
            "table": "nat",
            "chain": self.chain,
            "rule": self.rule,
            "rule_id": self.rule_id,
        }


@dataclass(frozen=True, slots=True)
class Hop:
    host: str
    direction: str  # egress (source's host) | ingress (destination's host)
    verdict: str  # allow | deny
    decision: Decision | None
    endpoints: tuple[EndpointResult, ...]
    nat: tuple[Nat, ...] = ()


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
    src, dst = flow.src, flow.dst
    if src.host is not None and src.host == dst.host:
        if src.is_host and dst.is_host:
            raise ValueError(f"{src.address} -> {dst.address}: both ends are host {src.host}")
        if src.is_host or dst.is_host:
            return _host_and_own_workload(hosts, rendered[src.host], flow)
        return _same_host(hosts, rendered[src.host], src.host, flow)
    hops = []
    packet = _sent(flow)
    if src.host is not None:
        host = hosts[src.host]
        path, in_iface = (OUTPUT_PATH, "") if src.is_host else (FORWARD_PATH, src.iface or "")
        ifaces = (in_iface, host.uplink)
        hop, packet = _walked_hop(
            hosts, rendered[src.host], src.host, "egress", flow, packet, ifaces, path
        )
        hops.append(hop)
    if dst.host is not None:
        host = hosts[dst.host]
        path, out_iface = (INPUT_PATH, "") if dst.is_host else (FORWARD_PATH, dst.iface or "")
        ifaces = (host.uplink, out_iface)
        hop, _ = _walked_hop(
            hosts, rendered[dst.host], dst.host, "ingress", flow, packet, ifaces, path
        )
        hops.append(hop)
    verdict = "allow" if all(h.verdict == "allow" for h in hops) else "deny"
    return Trace(verdict, tuple(hops))


def _host_and_own_workload(hosts: Mapping[str, HostInput], tables: HostTables, flow: Flow) -> Trace:
    """A workload and its own host: one walk (INPUT to the host, OUTPUT from it), one hop,
    named for the workload's side: its egress (then DefaultEndpointToHostAction), or the
    host's egress towards it (which Felix does not police)."""
    src, dst = flow.src, flow.dst
    name = src.host or ""
    if dst.is_host:
        ifaces, path = (src.iface or "", ""), INPUT_PATH
    else:
        ifaces, path = ("", dst.iface or ""), OUTPUT_PATH
    hop, _ = _walked_hop(hosts, tables, name, "egress", flow, _sent(flow), ifaces, path)
    return Trace(hop.verdict, (hop,))


def _walked_hop(
    hosts: Mapping[str, HostInput],
    tables: HostTables,
    name: str,
    direction: str,
    flow: Flow,
    packet: Packet,
    ifaces: tuple[str, str],
    path: Path,
) -> tuple[Hop, Packet]:
    """The packet's walk (in, out interfaces), then its reply's through raw: untracked
    policy sees every packet, conntrack's state or not (mangle and filter accept replies of
    a tracked connection). A dropped reply denies the hop, its endpoints marked "(reply)".
    Also the packet as this hop sends it on (translated as its nat table would, even if
    policy dropped it: what the next hop is asked about)."""
    host = hosts[name]
    out = _walk(tables, flow, packet, ifaces[0], ifaces[1], hosts, path)
    _check_route(name, host, flow, out)
    hop = _hop(host.cfg, tables, name, direction, out)
    if out.verdict != "ACCEPT":
        nat_only = tuple(p for p in path if p[0] == "nat")
        translated = _walk(tables, flow, packet, ifaces[0], ifaces[1], hosts, nat_only)
        _check_route(name, host, flow, translated)
        return hop, translated.packet
    reply = _reply(flow, out.packet)
    back = _walk(tables, reply, reply.packet, ifaces[1], ifaces[0], hosts, _REPLY_PATHS[path])
    if back.verdict == "ACCEPT":
        if out.packet.untracked and not back.packet.untracked:
            raise WalkError(
                "untracked policy let the packet through but not its reply: conntrack's view "
                "of that reply is not modelled"
            )
        return hop, out.packet
    dropped = _hop(host.cfg, tables, name, direction, back)
    marked = tuple(replace(e, endpoint=f"{e.endpoint} (reply)") for e in dropped.endpoints)
    return Hop(
        name, direction, "deny", dropped.decision, hop.endpoints + marked, hop.nat
    ), out.packet


# The reply of a forwarded packet is forwarded; of one to the host, sent by it; of one
# from the host, received by it. Only raw can stop it.
_REPLY_PATHS: dict[Path, Path] = {
    FORWARD_PATH: (("raw", "PREROUTING"),),
    INPUT_PATH: (("raw", "OUTPUT"),),
    OUTPUT_PATH: (("raw", "PREROUTING"),),
}
_ECHO_REPLY = {8: 0, 128: 129}
_SWAPPED = {"src": "dst", "dst": "src", "src_port": "dst_port", "dst_port": "src_port"}


@dataclass(frozen=True, slots=True)
class _Reply:
    """The reply's ends (for the reverse-path check) and its packet."""

    src: End
    dst: End
    packet: Packet


def _reply(flow: Flow, sent: Packet) -> _Reply:
    """The reply to `sent` as it left the hop: the translated addresses swapped (raw sees
    it before conntrack undoes the translation)."""
    icmp_type = sent.icmp_type
    if icmp_type is not None:
        if icmp_type not in _ECHO_REPLY:
            raise WalkError(f"the reply to ICMP type {icmp_type} is not modelled")
        icmp_type = _ECHO_REPLY[icmp_type]
    packet = replace(
        sent,
        src=sent.dst,
        dst=sent.src,
        src_port=sent.dst_port,
        dst_port=sent.src_port,
        icmp_type=icmp_type,
        unknown=tuple((_SWAPPED[f], why) for f, why in sent.unknown),
    )
    return _Reply(flow.dst, flow.src, packet)


def _sent(flow: Flow) -> Packet:
    """The packet as its source sends it."""
    return Packet(
        flow.ip_version,
        flow.src.address,
        flow.dst.address,
        flow.protocol,
        src_port=flow.src_port,
        dst_port=flow.dst_port,
        icmp_type=flow.icmp_type,
        icmp_code=flow.icmp_code,
    )


def _same_host(hosts: Mapping[str, HostInput], tables: HostTables, name: str, flow: Flow) -> Trace:
    """One walk, workload to workload, as the kernel does it, read as two hops. If the
    egress side drops, the ingress side is walked alone (from the uplink) to answer it too.
    No reply walk: raw lets a workload's packets past host endpoint policy. The walk's
    translations are the egress hop's."""
    host = hosts[name]
    src_iface, dst_iface = flow.src.iface or "", flow.dst.iface or ""
    real = _walk(tables, flow, _sent(flow), src_iface, dst_iface, hosts)
    _check_route(name, host, flow, real)
    ingress = _hop(host.cfg, tables, name, "ingress", real, only="ingress", nat=False)
    reached = bool(ingress.endpoints)
    egress_verdict = "allow" if reached or real.verdict == "ACCEPT" else "deny"
    egress = _hop(host.cfg, tables, name, "egress", real, only="egress", verdict=egress_verdict)
    if not reached:
        alone = _walk(tables, flow, _sent(flow), host.uplink, dst_iface, hosts)
        _check_route(name, host, flow, alone)
        ingress = _hop(host.cfg, tables, name, "ingress", alone, only="ingress")
    return Trace("allow" if real.verdict == "ACCEPT" else "deny", (egress, ingress))


def _walk(
    host: HostTables,
    ends: Flow | _Reply,
    packet: Packet,
    in_iface: str,
    out_iface: str,
    hosts: Mapping[str, HostInput],
    path: Path = FORWARD_PATH,
) -> Walk:
    """`packet` as it reaches this host (its conntrack state new). On INPUT_PATH the
    destination is the host's own address, on OUTPUT_PATH the source."""
    local: frozenset[str] = frozenset()
    if path == INPUT_PATH:
        local = frozenset({ends.dst.address})
    elif path == OUTPUT_PATH:
        local = frozenset({ends.src.address})
    arriving = replace(
        packet,
        in_iface=in_iface,
        out_iface=out_iface,
        local_addresses=local,
        rpf_ok=_rpf_ok(ends.src, packet, hosts),
        mark=0,
        untracked=False,
        dnat=False,
        snat=False,
    )
    return walk(host.tables, arriving, path)


def _check_route(name: str, host: HostInput, flow: Flow, walked: Walk) -> None:
    """The kernel routes after nat PREROUTING (OUTPUT), the walk was planned from the
    flow's destination end: they agree only if that nat left the destination where the
    end is (a workload of this host: one of its addresses; anything else: untranslated)."""
    routed = any(f.table == "nat" and f.chain in ("PREROUTING", "OUTPUT") for f in walked.frames)
    if not routed:
        return  # dropped before the routing decision
    dst, to = flow.dst, walked.packet.dst
    dnats = [t for t in walked.translations if t.kind == "DNAT"]
    if dst.workload is not None and dst.host == name:
        wep = host.state.workloads.get(dst.workload)
        if wep is not None and _in_nets(to, (*wep.ipv4_nets, *wep.ipv6_nets)):
            return
        who = f"workload {dst.workload.namespace}/{dst.workload.name}"
        if dnats:
            raise WalkError(
                f"host {name}'s nat table translates {dst.address} to {to} "
                f"({_rule_text(dnats[0])}), not an address of {who}"
            )
        why = (
            "the packet is untracked, and conntrack NATs no untracked packet"
            if walked.packet.untracked
            else "its Felix applies NAT mappings only with "
            "FloatingIPs Enabled or to OpenStack endpoints"
        )
        raise WalkError(
            f"{dst.address} is a NAT mapping (floating IP) of {who}, but host {name}'s nat "
            f"table does not translate it ({why}): the packet does not reach the workload"
        )
    if dnats:
        t = dnats[0]
        raise WalkError(
            f"host {name}'s nat table translates the destination {t.original} to "
            f"{t.translated} ({_rule_text(t)}): where the packet goes then is not modelled "
            f"(trace to {t.translated} instead)"
        )


def _rule_text(t: Translation) -> str:
    return f"{t.table} {t.chain}: {t.rule.spec()}"


def _in_nets(address: str, nets: tuple[str, ...]) -> bool:
    addr = ipaddress.ip_address(address)
    for net in nets:
        network = ipaddress.ip_network(net, strict=False)
        if network.version == addr.version and addr in network:
            return True
    return False


def _rpf_ok(src: End, packet: Packet, hosts: Mapping[str, HostInput]) -> bool:
    """The strict reverse-path check: a workload's source address must route back to it
    (its own addresses, its allowed spoofed prefixes, its floating IPs where they apply)."""
    if src.host is None or src.workload is None or src.host not in hosts:
        return True
    host = hosts[src.host]
    wep = host.state.workloads.get(src.workload)
    if wep is None:
        return False
    fips = (n.external_ip for n in endpoint_nats(host.cfg, wep, packet.ip_version))
    nets = (*wep.ipv4_nets, *wep.ipv6_nets, *wep.allow_spoofed_source_prefixes, *fips)
    return _in_nets(packet.src, nets)


def _hop(
    cfg: RulesConfig,
    host: HostTables,
    name: str,
    direction: str,
    result: Walk,
    *,
    only: str | None = None,
    verdict: str | None = None,
    nat: bool = True,
) -> Hop:
    """`only`: keep the endpoint chains of that direction (one walk read as two hops), whose
    `verdict` the caller then knows better than the walk's; `nat`: report the walk's
    translations on this hop."""
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
    nats = tuple(
        Nat(
            t.kind,
            t.field,
            t.original,
            t.translated,
            t.chain,
            t.rule.spec(),
            _rule_id(host, t.table, t.chain, t.index),
        )
        for t in result.translations
        if nat
    )
    return Hop(name, direction, verdict, decision, tuple(endpoints), nats)


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
                elif step.rule.comment[:1] == (_TO_HOST_ACTION,):
                    # Accept, or Return: the rest of the host's INPUT chain (none here).
                    action = "Allow" if target == "ACCEPT" else "Return"
                    self.last_allow = self._default(table, chain, step, action)
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
        jumps = _jumps(steps)
        for step in list(jumps.values()):
            if step.child is not None and is_policy_group(step.child.chain):
                jumps.update(_jumps(step.child.steps))  # its policies are the endpoint's
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
                table=jump.child.table,
            )
            break
        return PolicyResult(name, True, decision, tuple(logged))

    def _rule_id(self, table: str, chain: str, index: int) -> str | None:
        return _rule_id(self.host, table, chain, index)

    def _default(self, table: str, chain: str, step: Step, action: str, what: str = "") -> Decision:
        """A decision by a rule of Calico's own (no policy): its comment says which default."""
        rule = step.rule
        rule_id = self._rule_id(table, chain, step.index)
        comment = rule.comment[0] if rule.comment else ""
        if comment.startswith(_END_OF_TIER):
            tier = comment[len(_END_OF_TIER) :].split(". ")[0]
            return Decision(
                "end of tier", action, chain, rule.spec(), tier, rule_id=rule_id, table=table
            )
        if not what and any(p.startswith("-m rpfilter") for p in rule.match.parts):
            what = "anti-spoofing"  # the workload's source does not route back to it
        what = what or _DEFAULTS.get(comment, "rule")
        return Decision(what, action, chain, rule.spec(), rule_id=rule_id, table=table)

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


def _jumps(steps: list[Step]) -> dict[str, Step]:
    """The jumps taken in a chain's steps, by target chain."""
    return {
        s.rule.action.chain: s
        for s in steps
        if s.matched and isinstance(s.rule.action, Jump) and s.child is not None
    }


def _rule_id(host: HostTables, table: str, chain: str, index: int) -> str | None:
    """The rule's ID (hash) as the table driver writes it; None in a kernel chain."""
    found = host.tables.chains.get(table, {}).get(chain)
    return found.rule_hashes()[index] if found is not None else None


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
_TO_HOST_ACTION = "Configured DefaultEndpointToHostAction"
_DEFAULTS = {
    _TO_HOST_ACTION: "endpoint to host action",
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
                "nat": [n.to_json() for n in h.nat],
                "endpoints": [endpoint(e) for e in h.endpoints],
            }
            for h in result.hops
        ],
    }
