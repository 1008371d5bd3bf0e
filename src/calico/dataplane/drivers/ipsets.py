"""Reconciles the kernel's Calico IP sets of one IP family with the desired sets.

Role: the IP sets manager records desired state here without I/O (`set_members`,
`add_members`, `remove_members`, `remove`); the dataplane loop calls `apply_updates()` BEFORE
writing iptables (rules may only reference existing sets) and `apply_deletions()` AFTER (a set
still referenced by iptables cannot be destroyed).

Desired sets are keyed by family-agnostic ID ("s:<hash>"); members of the other family are
dropped here and members are canonicalised the way `ipset save` prints them (a /32 or /128
hash:net member without its prefix length), so kernel and desired state compare exactly.

Writes go through ONE `ipset -exist restore` per call. A set the kernel lacks is created and
filled; small differences are add/del deltas; a rewrite that would touch more entries than
the set will hold is done in a temporary set ("cali4t...") that is then swapped in, so the
live set is never half-filled. Ownership is by name prefix ("cali40"/"cali4t" for IPv4,
"cali60"/"cali6t" for IPv6): other sets are never read or touched. The kernel view is
cached; it is re-read on first use, after a failure, and after `resync()`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from calico.calc.messages import IPSetType
from calico.dataplane.kernel import CommandError, CommandRunner
from calico.rules import naming

_log = logging.getLogger(__name__)
MAX_IPSET_SIZE = 1_048_576


@dataclass
class KernelSet:
    type: str
    family: str
    members: set[str]


def canonical_member(set_type: IPSetType, member: str) -> tuple[int, str] | None:
    """(IP version, member as `ipset save` prints it), or None if it does not parse."""
    try:
        if set_type is IPSetType.IP_PORT:
            addr_text, proto_port = member.rsplit(",", 1)
            proto, port = proto_port.split(":")
            addr = ipaddress.ip_address(addr_text)
            return addr.version, f"{addr},{proto.lower()}:{int(port)}"
        net = ipaddress.ip_network(member, strict=False)
    except ValueError:
        return None
    text = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
    return net.version, text


def parse_ipset_save(text: str) -> dict[str, KernelSet]:
    sets: dict[str, KernelSet] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "create":
            family = words[words.index("family") + 1] if "family" in words else "inet"
            sets[words[1]] = KernelSet(words[2], family, set())
        elif len(words) >= 3 and words[0] == "add" and words[1] in sets:
            sets[words[1]].members.add(words[2])
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
        self._kernel = None

    def apply_updates(self) -> None:
        """Create and fill sets so they match the desired state (one `ipset restore`)."""
        if self._kernel is None:
            self._kernel = self._load()
            self._dirty_ids = set(self._desired)
        kernel = self._kernel
        lines: list[str] = []
        for set_id in sorted(self._dirty_ids):
            set_type, members = self._desired[set_id]
            lines += self._sync_lines(set_id, set_type, members, kernel.get(self.name_for(set_id)))
        self._restore(lines)
        for set_id in self._dirty_ids:
            set_type, members = self._desired[set_id]
            kernel[self.name_for(set_id)] = KernelSet(set_type.value, self._family, set(members))
            kernel.pop(naming.temp_ipset_name(self.ip_version, set_id), None)
        self._dirty_ids.clear()

    def apply_deletions(self) -> None:
        """Destroy our kernel sets that are no longer wanted (one `ipset restore`)."""
        if self._kernel is None:
            self._kernel = self._load()
            self._dirty_ids = set(self._desired)
        wanted = {self.name_for(i) for i in self._desired}
        stale = sorted(n for n in self._kernel if n not in wanted)
        self._restore([f"destroy {name}" for name in stale])
        for name in stale:
            del self._kernel[name]

    def _canonical(self, set_type: IPSetType, members: Iterable[str]) -> set[str]:
        out = set()
        for member in members:
            parsed = canonical_member(set_type, member)
            if parsed is None:
                _log.warning("ignoring malformed %s member %r", set_type.value, member)
            elif parsed[0] == self.ip_version:
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

    def _load(self) -> dict[str, KernelSet]:
        names = self._runner.run(["ipset", "list", "-n"]).stdout.split()
        sets: dict[str, KernelSet] = {}
        for name in names:
            if naming.owns_ipset(self.ip_version, name):
                sets.update(parse_ipset_save(self._runner.run(["ipset", "save", name]).stdout))
        return sets

    def _restore(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self._runner.run(["ipset", "-exist", "restore"], stdin="\n".join(lines) + "\n")
        except CommandError as exc:
            self._kernel = None  # partly applied: re-read before the retry
            _log.error(
                "ipset restore failed: %s\ninput was:\n%s", exc.stderr.strip(), "\n".join(lines)
            )
            raise
