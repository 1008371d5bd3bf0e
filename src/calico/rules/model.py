"""Abstract iptables rules: `Chain`, `Rule(match, action, comment)`, a `Match` builder, actions.

Role: the vocabulary `calico.rules` renders into and the drivers write out. A `Match` is an
immutable list of iptables match fragments in the order they were added (so rendering is
deterministic); actions are small frozen values. `Chain.rule_hashes()` gives each rule its
Felix-style ID: SHA-224 chained over the chain name and every earlier rule, base64url, 16
chars (felix/generictables/rules.go) -- so a rule's ID changes when it or anything before it
changes, and the table driver can diff chains by reading back only those IDs. Rules and
chains are immutable, so a rule's text and a chain's IDs are computed once, on first use.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from calico.calc.messages import PortRange

HASH_LENGTH = 16
MAX_COMMENT_LENGTH = 256
MAX_LOG_PREFIX = 29
_SHELL_UNSAFE = re.compile(r"[^\w @%+=:,./-]")


def escape_comment(text: str) -> str:
    """Felix's lossy escaping: iptables-restore has no reliable quoting for odd characters."""
    return _SHELL_UNSAFE.sub("_", text)[:MAX_COMMENT_LENGTH]


def comment_fragment(text: str) -> str:
    return f'-m comment --comment "{escape_comment(text)}"'


def _ports(ranges: Iterable[PortRange]) -> str:
    return ",".join(str(r.first) if r.first == r.last else f"{r.first}:{r.last}" for r in ranges)


@dataclass(frozen=True, slots=True)
class Match:
    """Match criteria, ANDed, rendered in insertion order. Every method returns a new Match."""

    parts: tuple[str, ...] = ()

    def render(self) -> str:
        return " ".join(self.parts)

    def __and__(self, other: Match) -> Match:
        return Match((*self.parts, *other.parts))

    def _with(self, part: str) -> Match:
        return Match((*self.parts, part))

    def protocol(self, proto: str, *, negate: bool = False) -> Match:
        return self._with(f"{'! ' if negate else ''}-p {proto}")

    def in_iface(self, name: str) -> Match:
        return self._with(f"-i {name}")

    def out_iface(self, name: str) -> Match:
        return self._with(f"-o {name}")

    def src_net(self, cidr: str, *, negate: bool = False) -> Match:
        return self._with(f"{'! ' if negate else ''}-s {cidr}")

    def dst_net(self, cidr: str, *, negate: bool = False) -> Match:
        return self._with(f"{'! ' if negate else ''}-d {cidr}")

    def ipset(
        self, name: str, direction: str, *, ip_port: bool = False, negate: bool = False
    ) -> Match:
        """`direction` is "src" or "dst"; hash:ip,port sets match "src,src" / "dst,dst"."""
        dirs = f"{direction},{direction}" if ip_port else direction
        return self._with(f"-m set {'! ' if negate else ''}--match-set {name} {dirs}")

    def ports(self, direction: str, ranges: Iterable[PortRange], *, negate: bool = False) -> Match:
        """A multiport match (needs a preceding tcp/udp/sctp protocol match, <= 15 slots)."""
        opt = "--sports" if direction == "src" else "--dports"
        return self._with(f"-m multiport {'! ' if negate else ''}{opt} {_ports(ranges)}")

    def icmp(
        self, ip_version: int, icmp_type: int, code: int | None = None, *, negate: bool = False
    ) -> Match:
        value = str(icmp_type) if code is None else f"{icmp_type}/{code}"
        neg = "! " if negate else ""
        if ip_version == 4:
            return self._with(f"-m icmp {neg}--icmp-type {value}")
        return self._with(f"-m icmp6 {neg}--icmpv6-type {value}")

    def ct_state(self, states: str, *, negate: bool = False) -> Match:
        return self._with(f"-m conntrack {'! ' if negate else ''}--ctstate {states}")

    def mark_clear(self, mask: int) -> Match:
        return self._with(f"-m mark --mark 0x0/{mask:#x}")

    def mark_set(self, bit: int) -> Match:
        return self._with(f"-m mark --mark {bit:#x}/{bit:#x}")

    def mark_not_clear(self, mask: int) -> Match:
        return self._with(f"-m mark ! --mark 0x0/{mask:#x}")

    def rpf_failed(self) -> Match:
        return self._with("-m rpfilter --invert")

    def dst_addr_local(self) -> Match:
        return self._with("-m addrtype --dst-type LOCAL")

    def src_addr_local(self) -> Match:
        return self._with("-m addrtype --src-type LOCAL")


ANY = Match()


class Action(abc.ABC):
    """What a matching rule does; `target_chain` names a chain it jumps or goes to."""

    __slots__ = ()

    @abc.abstractmethod
    def render(self) -> str: ...

    @property
    def target_chain(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class Verdict(Action):
    """A built-in target without options: ACCEPT, DROP, REJECT, RETURN."""

    target: str

    def render(self) -> str:
        return f"-j {self.target}"


ACCEPT = Verdict("ACCEPT")
DROP = Verdict("DROP")
REJECT = Verdict("REJECT")
RETURN = Verdict("RETURN")


def verdict(target: str) -> Verdict:
    """A configured action name ("ACCEPT", "DROP", "REJECT", "RETURN") as an Action."""
    if target not in ("ACCEPT", "DROP", "REJECT", "RETURN"):
        raise ValueError(f"unknown verdict {target!r}")
    return Verdict(target)


@dataclass(frozen=True, slots=True)
class Jump(Action):
    chain: str

    def render(self) -> str:
        return f"-j {self.chain}"

    @property
    def target_chain(self) -> str | None:
        return self.chain


@dataclass(frozen=True, slots=True)
class Goto(Action):
    chain: str

    def render(self) -> str:
        return f"-g {self.chain}"

    @property
    def target_chain(self) -> str | None:
        return self.chain


@dataclass(frozen=True, slots=True)
class SetMark(Action):
    """Sets `value` within `mask` (other mark bits untouched); SetMark(b, b) sets bit b."""

    value: int
    mask: int

    def render(self) -> str:
        return f"-j MARK --set-xmark {self.value:#x}/{self.mask:#x}"


def set_mark(bits: int) -> SetMark:
    return SetMark(bits, bits)


def clear_mark(bits: int) -> SetMark:
    return SetMark(0, bits)


@dataclass(frozen=True, slots=True)
class Log(Action):
    """LOG with "<prefix>: " (iptables caps the whole prefix at 29 characters)."""

    prefix: str

    def render(self) -> str:
        prefix = escape_comment(self.prefix)[: MAX_LOG_PREFIX - 2]
        return f'-j LOG --log-prefix "{prefix}: " --log-level 5'


@dataclass(frozen=True, slots=True)
class NoTrack(Action):
    def render(self) -> str:
        return "-j NOTRACK"


@dataclass(frozen=True, slots=True)
class Masquerade(Action):
    """nat POSTROUTING only; `to_ports` ("lo-hi") needs a tcp/udp protocol match."""

    to_ports: str | None = None
    random_fully: bool = False

    def render(self) -> str:
        ports = f" --to-ports {self.to_ports}" if self.to_ports else ""
        return f"-j MASQUERADE{ports}{' --random-fully' if self.random_fully else ''}"


@dataclass(frozen=True, slots=True)
class SNAT(Action):
    """`to_source` is an address, optionally with ":lo-hi" ports."""

    to_source: str
    random_fully: bool = False

    def render(self) -> str:
        return (
            f"-j SNAT --to-source {self.to_source}{' --random-fully' if self.random_fully else ''}"
        )


@dataclass(frozen=True, slots=True)
class DNAT(Action):
    """`to_destination` is an address, or "address:port" (IPv6: "[address]:port")."""

    to_destination: str

    def render(self) -> str:
        return f"-j DNAT --to-destination {self.to_destination}"


@dataclass(frozen=True, slots=True)
class Rule:
    match: Match = ANY
    action: Action | None = None
    comment: tuple[str, ...] = ()
    # Computed on first use (the value is immutable); not part of equality or hashing.
    _spec: str | None = field(default=None, init=False, repr=False, compare=False)

    def spec(self) -> str:
        """Everything after `-A <chain> <hash comment>`: comments, match, action."""
        spec = self._spec
        if spec is None:
            frags = [comment_fragment(c) for c in self.comment]
            frags += [f for f in (self.match.render(), self.action and self.action.render()) if f]
            spec = " ".join(frags)
            object.__setattr__(self, "_spec", spec)
        return spec


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    rules: tuple[Rule, ...] = ()
    # Computed on first use, like Rule._spec: one chain is often installed in both families.
    _hashes: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)
    _targets: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)

    def rule_hashes(self) -> list[str]:
        hashes = self._hashes
        if hashes is None:
            hashes = tuple(chained_hashes(self.name, self.rules))
            object.__setattr__(self, "_hashes", hashes)
        return list(hashes)

    def targets(self) -> set[str]:
        """Chains this chain jumps or goes to."""
        targets = self._targets
        if targets is None:
            targets = frozenset(t for r in self.rules if r.action and (t := r.action.target_chain))
            object.__setattr__(self, "_targets", targets)
        return set(targets)


def chained_hashes(seed: str, rules: Iterable[Rule]) -> list[str]:
    """Felix's rule IDs: each hash covers the seed and every rule up to and including itself."""
    digest = hashlib.sha224(seed.encode()).digest()
    hashes = []
    for rule in rules:
        digest = hashlib.sha224(digest + f"-A {seed} HASH {rule.spec()}".encode()).digest()
        hashes.append(base64.urlsafe_b64encode(digest).decode()[:HASH_LENGTH])
    return hashes


@dataclass(frozen=True, slots=True)
class Hook:
    """Our rules inside a kernel chain (INPUT, FORWARD...): `insert` goes at its top (at its
    end in "append" insert mode), `append` always at its end, after everyone else's rules."""

    chain: str
    insert: tuple[Rule, ...] = ()
    append: tuple[Rule, ...] = ()
