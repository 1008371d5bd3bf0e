"""Walk one packet through rendered chains, as netfilter would (pure).

Inputs: `Tables` (the `Chain`s of the raw, mangle, nat and filter tables, the `Hook`s into
the kernel's own chains, the IP sets' members) and a `Packet`. Output: a `Walk`, the tree of
`Frame`s entered (chain, each rule evaluated, whether it matched, the frame it jumped
to), the address translations made and the verdict.

The matching reads the rendered rules' match fragments, the very text the table driver
writes into iptables-restore, so what is evaluated here is what the kernel is given. A
fragment this module does not know raises `WalkError`: an explanation that guessed would be
worse than none.

Model of the kernel, for a packet opening a connection (conntrack NEW): each table's
kernel chain runs our hook rules and then its ACCEPT policy (no foreign rules); ACCEPT ends
that table only, DROP/REJECT end the packet; NOTRACK makes the packet untracked for the
tables after raw; the mark carries across tables. In nat, DNAT, SNAT and MASQUERADE rewrite
the packet and end that table (conntrack's state then includes DNAT or SNAT); an untracked
packet skips nat, as the kernel only NATs tracked connections. What a NAT leaves unknown
(MASQUERADE's address: the outgoing interface's; a source port under --random-fully or a
port range) is marked so: a rule that reads it later is a `WalkError`, not a guess.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field, replace

from calico.calc.messages import IPSetType
from calico.rules.model import (
    DNAT,
    SNAT,
    Chain,
    Goto,
    Hook,
    Jump,
    Log,
    Masquerade,
    NoTrack,
    Rule,
    SetMark,
    Verdict,
)

# Tables and kernel chains a packet crosses, in order (those Calico hooks): forwarded, to
# the host itself, from the host itself. The routing decision falls after nat PREROUTING
# (or OUTPUT): the caller picks the path and interfaces and checks where a DNAT led.
Path = tuple[tuple[str, str], ...]
FORWARD_PATH: Path = (
    ("raw", "PREROUTING"),
    ("mangle", "PREROUTING"),
    ("nat", "PREROUTING"),
    ("filter", "FORWARD"),
    ("nat", "POSTROUTING"),
)
INPUT_PATH: Path = (
    ("raw", "PREROUTING"),
    ("mangle", "PREROUTING"),
    ("nat", "PREROUTING"),
    ("filter", "INPUT"),
)
OUTPUT_PATH: Path = (
    ("raw", "OUTPUT"),
    ("nat", "OUTPUT"),
    ("filter", "OUTPUT"),
    ("mangle", "POSTROUTING"),
    ("nat", "POSTROUTING"),
)
_PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "sctp": 132, "udplite": 136}
_PORTED = (6, 17, 132, 136)
_MAX_DEPTH = 64


class WalkError(ValueError):
    """The chains hold something this model cannot evaluate."""


@dataclass(frozen=True, slots=True)
class Packet:
    ip_version: int
    src: str
    dst: str
    protocol: int  # IP protocol number
    src_port: int | None = None
    dst_port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    in_iface: str = ""
    out_iface: str = ""
    local_addresses: frozenset[str] = frozenset()  # the host's own (addrtype LOCAL)
    rpf_ok: bool = True  # the source is routed back out of in_iface
    mark: int = 0
    untracked: bool = False
    dnat: bool = False  # conntrack state DNAT: the destination was translated
    snat: bool = False
    # Fields a NAT made unknowable here (src, src_port, dst, dst_port), with why.
    unknown: tuple[tuple[str, str], ...] = ()

    def known(self, name: str) -> str | int | None:
        """A field's value; a `WalkError` saying why if a NAT left it unknown."""
        for field_name, why in self.unknown:
            if field_name == name:
                raise WalkError(why)
        value: str | int | None = getattr(self, name)
        return value


@dataclass(frozen=True, slots=True)
class IPSet:
    type: IPSetType
    members: frozenset[str]


@dataclass(frozen=True, slots=True)
class Tables:
    chains: dict[str, dict[str, Chain]]  # table -> name -> chain
    hooks: dict[str, dict[str, Hook]]  # table -> kernel chain -> hook
    ipsets: dict[str, IPSet]  # kernel name -> set


@dataclass(slots=True)
class Step:
    index: int
    rule: Rule
    matched: bool
    child: Frame | None = None


@dataclass(slots=True)
class Frame:
    table: str
    chain: str
    steps: list[Step] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Translation:
    """One NAT rule's rewrite: `field` source or destination, "address[:port]" before and
    after (`translated` None: MASQUERADE's, the outgoing interface's address)."""

    kind: str  # DNAT, SNAT, MASQUERADE
    field: str  # source | destination
    original: str
    translated: str | None
    table: str
    chain: str
    index: int  # of the rule in its chain
    rule: Rule


@dataclass(frozen=True, slots=True)
class Walk:
    verdict: str  # "ACCEPT" or "DROP" (REJECT counts as DROP)
    frames: tuple[Frame, ...]  # one per kernel chain crossed
    packet: Packet  # as it left (mark, untracked, translated addresses)
    translations: tuple[Translation, ...] = ()


def walk(tables: Tables, packet: Packet, path: Path = FORWARD_PATH) -> Walk:
    frames = []
    translations: list[Translation] = []
    for table, kernel_chain in path:
        walker = _Walker(tables, table, packet, translations)
        hook = tables.hooks.get(table, {}).get(kernel_chain, Hook(kernel_chain))
        frame = Frame(table, kernel_chain)
        frames.append(frame)
        if table == "nat" and packet.untracked:
            continue  # entered (the frame says so), but conntrack NATs no untracked packet
        result = walker.run(frame, (*hook.insert, *hook.append), 0)
        packet = walker.packet
        if result in ("DROP", "REJECT"):
            return Walk("DROP", tuple(frames), packet, tuple(translations))
    return Walk("ACCEPT", tuple(frames), packet, tuple(translations))


class _Walker:
    def __init__(
        self, tables: Tables, table: str, packet: Packet, translations: list[Translation]
    ) -> None:
        self.tables, self.table, self.packet = tables, table, packet
        self.translations = translations

    def run(self, frame: Frame, rules: tuple[Rule, ...], depth: int) -> str | None:
        """ACCEPT/DROP/REJECT, or None when the chain returned (or fell off its end)."""
        if depth > _MAX_DEPTH:
            raise WalkError(f"chains nest deeper than {_MAX_DEPTH} at {frame.chain}")
        for index, rule in enumerate(rules):
            matched = all(self._fragment(part) for part in rule.match.parts)
            step = Step(index, rule, matched)
            frame.steps.append(step)
            if not matched or rule.action is None:
                continue
            action = rule.action
            if isinstance(action, Jump | Goto):
                step.child = Frame(self.table, action.chain)
                result = self.run(step.child, self._chain(action.chain).rules, depth + 1)
                if result is not None or isinstance(action, Goto):
                    return result
            elif isinstance(action, Verdict):
                return None if action.target == "RETURN" else action.target
            elif isinstance(action, SetMark):
                mark = (self.packet.mark & ~action.mask) | action.value
                self.packet = replace(self.packet, mark=mark)
            elif isinstance(action, NoTrack):
                self.packet = replace(self.packet, untracked=True)
            elif isinstance(action, DNAT | SNAT | Masquerade) and self.table == "nat":
                self._translate(frame.chain, index, rule, action)
                return "ACCEPT"  # a NAT target ends the nat table for this packet
            elif not isinstance(action, Log):
                raise WalkError(f"cannot evaluate action {action.render()!r} in {frame.chain}")
        return None

    def _translate(
        self, chain: str, index: int, rule: Rule, action: DNAT | SNAT | Masquerade
    ) -> None:
        pkt = self.packet
        if isinstance(action, DNAT):
            address, port = _address_port(action.to_destination)
            dst_port = pkt.dst_port if port is None else port
            self.packet = replace(pkt, dst=address, dst_port=dst_port, dnat=True)
            original = _show(pkt.dst, None if port is None else pkt.dst_port)
            translated: str | None = action.to_destination
            kind, field_name = "DNAT", "destination"
        else:
            kind = "SNAT" if isinstance(action, SNAT) else "MASQUERADE"
            if isinstance(action, SNAT):
                address, ports = _address_ports(action.to_source)
            else:
                address, ports = None, action.to_ports
            by = f"{kind} ({self.table} {chain}: {rule.spec()})"
            unknown = list(pkt.unknown)
            if address is None:
                why = f"the source address after {by} is the outgoing interface's: not known here"
                unknown.append(("src", why))
            if pkt.protocol in _PORTED and (ports is not None or action.random_fully):
                unknown.append(("src_port", f"the source port after {by} is the kernel's pick"))
            self.packet = replace(pkt, src=address or pkt.src, snat=True, unknown=tuple(unknown))
            original, translated, field_name = pkt.src, address, "source"
        self.translations.append(
            Translation(kind, field_name, original, translated, self.table, chain, index, rule)
        )

    def _chain(self, name: str) -> Chain:
        chain = self.tables.chains.get(self.table, {}).get(name)
        if chain is None and self.table == "nat":
            return Chain(name)  # the nat stub is empty: an unprogrammed chain translates nothing
        # The table driver stubs a jump to a missing cali- chain with a drop-all chain.
        return chain or Chain(name, (Rule(action=Verdict("DROP"), comment=("missing chain",)),))

    def _fragment(self, part: str) -> bool:
        words = shlex.split(part)
        negate = "!" in words
        words = [w for w in words if w != "!"]
        return _evaluate(words, self.packet, self.tables.ipsets) != negate


def _address_port(text: str) -> tuple[str, int | None]:
    """DNAT's "address", "address:port" or "[v6 address]:port"."""
    address, ports = _address_ports(text)
    return address, None if ports is None else int(ports)


def _address_ports(text: str) -> tuple[str, str | None]:
    """NAT's "address", "address:ports" or "[v6 address]:ports" (ports: "p" or "lo-hi")."""
    if text.startswith("["):
        address, _, ports = text[1:].partition("]:")
        return address, ports
    if text.count(":") == 1:
        address, _, ports = text.partition(":")
        return address, ports
    return text, None


def _show(address: str, port: int | None) -> str:
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _evaluate(words: list[str], pkt: Packet, ipsets: dict[str, IPSet]) -> bool:
    match words:
        case ["-p", proto]:
            return _protocol_number(proto) == pkt.protocol
        case ["-i", name]:
            return _iface(name, pkt.in_iface)
        case ["-o", name]:
            return _iface(name, pkt.out_iface)
        case ["-s", net]:
            return _in_net(str(pkt.known("src")), net)
        case ["-d", net]:
            return _in_net(str(pkt.known("dst")), net)
        case ["-m", "set", "--match-set", name, dirs]:
            return _in_set(ipsets, name, dirs, pkt)
        case ["-m", "multiport", opt, ports] if opt in ("--sports", "--dports"):
            if pkt.protocol not in _PORTED:
                return False
            port = pkt.known("src_port" if opt == "--sports" else "dst_port")
            return isinstance(port, int) and _in_ports(port, ports)
        case ["-m", "icmp" | "icmp6", "--icmp-type" | "--icmpv6-type", value]:
            icmp_type, _, code = value.partition("/")
            return (
                pkt.protocol in (1, 58)
                and pkt.icmp_type == int(icmp_type)
                and (not code or pkt.icmp_code == int(code))
            )
        case ["-m", "conntrack", "--ctstate", states]:
            own = {"UNTRACKED"} if pkt.untracked else {"NEW"}
            own |= {s for s, on in (("DNAT", pkt.dnat), ("SNAT", pkt.snat)) if on}
            return bool(own & set(states.split(",")))
        case ["-m", "mark", "--mark", value]:
            bits, _, mask = value.partition("/")
            return pkt.mark & int(mask, 16) == int(bits, 16)
        case ["-m", "rpfilter", "--invert"]:
            return not pkt.rpf_ok
        case ["-m", "addrtype", "--dst-type", "LOCAL"]:
            return pkt.known("dst") in pkt.local_addresses
        case ["-m", "addrtype", "--src-type", "LOCAL"]:
            return pkt.known("src") in pkt.local_addresses
    raise WalkError(f"cannot evaluate match {' '.join(words)!r}")


def _protocol_number(proto: str) -> int:
    if proto.isdigit():
        return int(proto)
    if proto not in _PROTOCOL_NUMBERS:
        raise WalkError(f"unknown protocol {proto!r}")
    return _PROTOCOL_NUMBERS[proto]


def _iface(pattern: str, iface: str) -> bool:
    if pattern.endswith("+"):
        return iface.startswith(pattern[:-1])
    return iface == pattern


def _in_net(address: str, net: str) -> bool:
    addr = ipaddress.ip_address(address)
    network = ipaddress.ip_network(net, strict=False)
    return addr.version == network.version and addr in network


def _in_ports(port: int, ports: str) -> bool:
    for item in ports.split(","):
        first, _, last = item.partition(":")
        if int(first) <= port <= int(last or first):
            return True
    return False


def _in_set(ipsets: dict[str, IPSet], name: str, dirs: str, pkt: Packet) -> bool:
    ipset = ipsets.get(name)
    if ipset is None:  # iptables-restore refuses a rule naming a missing set
        raise WalkError(f"rule uses IP set {name} that the calculation did not produce")
    side = dirs.split(",")[0]
    address = str(pkt.known(side))
    if ipset.type is IPSetType.NET:
        return any(_in_net(address, m) for m in ipset.members if (":" in m) == (":" in address))
    port = pkt.known(f"{side}_port")
    if not isinstance(port, int):
        return False
    addr = ipaddress.ip_address(address)
    for member in ipset.members:
        member_addr, _, proto_port = member.partition(",")
        proto, _, member_port = proto_port.partition(":")
        if (
            (":" in member_addr) == (":" in address)
            and ipaddress.ip_address(member_addr) == addr
            and _protocol_number(proto) == pkt.protocol
            and int(member_port) == port
        ):
            return True
    return False
