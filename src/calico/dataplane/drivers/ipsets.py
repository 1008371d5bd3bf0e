"""Reconciles the kernel's Calico IP sets of one IP family with the desired sets.

Role: the IP sets manager records desired state here without I/O (`set_members`,
`add_members`, `remove_members`, `remove`); the dataplane loop calls `apply_updates()` BEFORE
writing iptables (rules may only reference existing sets) and `apply_deletions()` AFTER (a set
still referenced by iptables cannot be destroyed), through an `IPSetWriter` that does this for
both families' drivers at once.

Desired sets are keyed by family-agnostic ID ("s:<hash>"); members of the other family are
dropped here and members are canonicalised the way `ipset save` prints them (a /32 or /128
hash:net member without its prefix length), so kernel and desired state compare exactly.

Writes go through ONE `ipset -exist restore` per phase (for all families written together).
A set the kernel lacks is created and filled; small differences are add/del deltas; a rewrite
that would touch more entries than the set will hold is done in a temporary set
("cali4t...") that is then swapped in, so the live set is never half-filled. Ownership is by
name prefix ("cali40"/"cali4t" for IPv4, "cali60"/"cali6t" for IPv6): other sets are never
touched (one `ipset save` reads them all; only ours are kept). The kernel view is cached; it
is re-read on first use, after a failure, and after `resync()`.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from calico.calc.messages import IPSetType
from calico.programs import CommandFailed, CommandRunner
from calico.rules import naming

_log = logging.getLogger(__name__)
MAX_IPSET_SIZE = 1_048_576
_HOST_LENGTH = {4: "32", 6: "128"}


@dataclass
class KernelSet:
    type: str
    family: str
    members: set[str]


def member_version(set_type: IPSetType, member: str) -> int:
    """The IP version a member belongs to if it parses at all (only IPv6 has colons)."""
    address = member.rpartition(",")[0] if set_type is IPSetType.IP_PORT else member
    return 6 if ":" in address else 4


def canonical_member(set_type: IPSetType, member: str) -> tuple[int, str] | None:
    """(IP version, member as `ipset save` prints it), or None if it does not parse."""
    try:
        if set_type is IPSetType.IP_PORT:
            addr_text, proto_port = member.rsplit(",", 1)
            proto, port = proto_port.split(":")
            fast = _fast_address(addr_text)
            if fast is None:
                addr = ipaddress.ip_address(addr_text)
                fast = addr.version, str(addr)
            return fast[0], f"{fast[1]},{proto.lower()}:{int(port)}"
        addr_text, slash, length = member.partition("/")
        if not slash or length == _HOST_LENGTH[6 if ":" in addr_text else 4]:
            fast = _fast_address(addr_text)  # a host: the common case, kept cheap
            if fast is not None:
                return fast
        net = ipaddress.ip_network(member, strict=False)
    except ValueError:
        return None
    text = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
    return net.version, text


def _fast_address(text: str) -> tuple[int, str] | None:
    """(IP version, address as ipaddress prints it) by inet_pton/inet_ntop, ~10x cheaper; None
    where the two may disagree (what inet_pton rejects, IPv4-in-IPv6 notation)."""
    version = 6 if ":" in text else 4
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    try:
        printed = socket.inet_ntop(family, socket.inet_pton(family, text))
    except (OSError, ValueError):
        return None
    return None if version == 6 and "." in printed else (version, printed)


def parse_ipset_save(
    text: str, wanted: Callable[[str], bool] = lambda _name: True
) -> dict[str, KernelSet]:
    """The sets in `ipset save` output whose names are `wanted`."""
    sets: dict[str, KernelSet] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "add" and words[1] in sets:
            sets[words[1]].members.add(words[2])
        elif len(words) >= 3 and words[0] == "create" and wanted(words[1]):
            family = words[words.index("family") + 1] if "family" in words else "inet"
            sets[words[1]] = KernelSet(words[2], family, set())
    return sets


class IPSets:
    def __init__(
        self, ip_version: int, runner: CommandRunner, *, max_size: int = MAX_IPSET_SIZE
    ) -> None:
        self.ip_version = ip_version
        self._family = "inet" if ip_version == 4 else "inet6"
        self._runner = runner
        self._max_size = max_size
        self._desired: dict[str, tuple[IPSetType, set[str]]] = {}
        self._dirty_ids: set[str] = set()
        self._kernel: dict[str, KernelSet] | None = None
        self._refreshing = False  # the next read re-checks a view we had: counts drift
        self._pending: set[str] = set()  # sets due a write anyway when the view was re-read
        self._drifted: list[str] = []  # sets the pending write repairs
        self.drift_repaired = 0  # sets a refresh found changed behind our back

    def desired_ids(self) -> frozenset[str]:
        """The IDs of the sets this driver is keeping in the kernel."""
        return frozenset(self._desired)

    def name_for(self, set_id: str) -> str:
        return naming.ipset_name(self.ip_version, set_id)

    @property
    def dirty(self) -> bool:
        return bool(self._dirty_ids) or self._kernel is None

    def set_members(self, set_id: str, set_type: IPSetType, members: Iterable[str]) -> None:
        """Desired full membership (members of the other family are ignored)."""
        self._desired[set_id] = (set_type, self._canonical(set_type, members))
        self._dirty_ids.add(set_id)

    def add_members(self, set_id: str, members: Iterable[str]) -> None:
        set_type, current = self._desired[set_id]
        current |= self._canonical(set_type, members)
        self._dirty_ids.add(set_id)

    def remove_members(self, set_id: str, members: Iterable[str]) -> None:
        set_type, current = self._desired[set_id]
        current -= self._canonical(set_type, members)
        self._dirty_ids.add(set_id)

    def remove(self, set_id: str) -> None:
        """Forget a set; it is destroyed by the next `apply_deletions()`."""
        self._desired.pop(set_id, None)
        self._dirty_ids.discard(set_id)

    def resync(self) -> None:
        """Distrust the cached kernel view: the next apply re-reads and repairs every set."""
        self._refreshing = self._refreshing or self._kernel is not None
        self._kernel = None

    def apply_updates(self) -> None:
        """Create and fill sets so they match the desired state (one `ipset restore`)."""
        IPSetWriter(self._runner, [self]).apply_updates()

    def apply_deletions(self) -> None:
        """Destroy our kernel sets that are no longer wanted (one `ipset restore`)."""
        IPSetWriter(self._runner, [self]).apply_deletions()

    # -- the writer's side ----------------------------------------------------------------

    def _load(self, sets: dict[str, KernelSet]) -> None:
        """Takes a fresh kernel view (our own sets only): every desired set is rechecked."""
        self._kernel = sets
        self._pending = self._dirty_ids
        self._dirty_ids = set(self._desired)

    def _update_lines(self) -> list[str]:
        assert self._kernel is not None
        lines: list[str] = []
        drifted: list[str] = []
        for set_id in sorted(self._dirty_ids):
            set_type, members = self._desired[set_id]
            current = self._kernel.get(self.name_for(set_id))
            sync = self._sync_lines(set_id, set_type, members, current)
            if sync and self._refreshing and set_id not in self._pending:
                drifted.append(self.name_for(set_id))
            lines += sync
        if drifted:
            _log.warning(
                "refresh repairs drift in IP sets: %d set(s) changed outside Felix: %s",
                len(drifted),
                " ".join(drifted[:10]) + (" ..." if len(drifted) > 10 else ""),
            )
        self._drifted = drifted
        return lines

    def _updates_written(self) -> None:
        assert self._kernel is not None
        for set_id in self._dirty_ids:
            set_type, members = self._desired[set_id]
            self._kernel[self.name_for(set_id)] = KernelSet(
                set_type.value, self._family, set(members)
            )
            self._kernel.pop(naming.temp_ipset_name(self.ip_version, set_id), None)
        self.drift_repaired += len(self._drifted)
        self._drifted = []
        self._dirty_ids.clear()
        self._refreshing = False

    def _stale(self) -> list[str]:
        assert self._kernel is not None
        wanted = {self.name_for(i) for i in self._desired}
        return sorted(n for n in self._kernel if n not in wanted)

    def _deletions_written(self) -> None:
        assert self._kernel is not None
        for name in self._stale():
            del self._kernel[name]

    def _canonical(self, set_type: IPSetType, members: Iterable[str]) -> set[str]:
        out = set()
        for member in members:
            if member_version(set_type, member) != self.ip_version:
                continue  # the other family's driver keeps (or reports) it
            parsed = canonical_member(set_type, member)
            if parsed is None:
                _log.warning("ignoring malformed %s member %r", set_type.value, member)
            else:
                out.add(parsed[1])
        return out

    def _sync_lines(
        self, set_id: str, set_type: IPSetType, members: set[str], current: KernelSet | None
    ) -> list[str]:
        name = self.name_for(set_id)
        if current is not None and (current.type, current.family) != (set_type.value, self._family):
            _log.warning("IP set %s has type %s/%s: recreating", name, current.type, current.family)
            return [f"destroy {name}", *self._fill(name, set_type, members)]
        if current is None:
            return self._fill(name, set_type, members)
        adds, dels = members - current.members, current.members - members
        if len(adds) + len(dels) <= max(len(members), 1):
            return [f"del {name} {m}" for m in sorted(dels)] + [
                f"add {name} {m}" for m in sorted(adds)
            ]
        temp = naming.temp_ipset_name(self.ip_version, set_id)
        lines = [f"destroy {temp}"] if temp in (self._kernel or {}) else []
        return [
            *lines,
            *self._fill(temp, set_type, members),
            f"swap {temp} {name}",
            f"destroy {temp}",
        ]

    def _fill(self, name: str, set_type: IPSetType, members: set[str]) -> list[str]:
        create = f"create {name} {set_type.value} family {self._family} maxelem {self._max_size}"
        return [create, *(f"add {name} {m}" for m in sorted(members))]


class IPSetWriter:
    """Writes the drivers of several IP families together: one `ipset save` reads the kernel
    for all those that need a fresh view, one `ipset restore` writes each phase."""

    def __init__(self, runner: CommandRunner, drivers: Sequence[IPSets]) -> None:
        self._runner = runner
        self._drivers = list(drivers)

    def apply_updates(self) -> None:
        """Create and fill sets so they match the desired state."""
        self._read()
        self._restore([line for d in self._drivers for line in d._update_lines()])
        for driver in self._drivers:
            driver._updates_written()

    def apply_deletions(self) -> None:
        """Destroy our kernel sets that are no longer wanted."""
        self._read()
        self._restore([f"destroy {name}" for d in self._drivers for name in d._stale()])
        for driver in self._drivers:
            driver._deletions_written()

    def _read(self) -> None:
        unread = [d for d in self._drivers if d._kernel is None]
        if not unread:
            return
        versions = {d.ip_version for d in unread}
        sets = parse_ipset_save(
            self._runner.run(["ipset", "save"]).stdout,
            lambda name: any(naming.owns_ipset(v, name) for v in versions),
        )
        for driver in unread:
            driver._load({n: s for n, s in sets.items() if naming.owns_ipset(driver.ip_version, n)})

    def _restore(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self._runner.run(["ipset", "-exist", "restore"], stdin="\n".join(lines) + "\n")
        except CommandFailed as exc:
            for driver in self._drivers:
                driver.resync()  # partly applied: re-read before the retry
            _log.error(
                "ipset restore failed: %s\ninput was:\n%s", exc.stderr.strip(), "\n".join(lines)
            )
            raise
