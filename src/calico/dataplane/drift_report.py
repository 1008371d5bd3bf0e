"""Pure: the writes of a dry-run apply (dataplane.dry_run) -> drift, item by item.

Each item names a kernel object Felix owns and what the kernel lacks (`missing`: Felix would
add it) or holds beyond what the datastore asks for (`unexpected`: Felix would remove it).
Chains are compared rule by rule through the rule hashes Felix writes in every rule's first
comment, so a rule the kernel prints differently from how it was written is not drift; a
rule without our hash inside our chain is. IP sets are compared member by member.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from calico.dataplane.drivers.links import parse_sysctl_output
from calico.dataplane.dry_run import Write
from calico.programs import name_of
from calico.rules.naming import CHAIN_PREFIX, RULE_HASH_PREFIX

_HASH = re.compile(r'--comment "?' + re.escape(RULE_HASH_PREFIX) + r'([A-Za-z0-9_-]+)"?')


@dataclass(frozen=True, slots=True)
class Drift:
    kind: str  # iptables, ipset, route, neigh, sysctl, other
    subject: str
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
        }


@dataclass
class _Table:
    chains: dict[str, list[str]] = field(default_factory=dict)  # chain -> its "-A" lines


def drift_items(writes: Sequence[Write], reads: Mapping[tuple[str, ...], str]) -> list[Drift]:
    """`reads`: the last output of each read command the dry run made (argv -> stdout)."""
    items: list[Drift] = []
    for write in writes:
        name = name_of(write.argv[0])
        if name.endswith("-restore") and "tables" in name:
            version = "v6" if name.startswith("ip6") else "v4"
            kernel = _kernel_tables(reads, name.replace("-restore", "-save"))
            items += _iptables(version, write.stdin, kernel)
        elif name == "ipset" and "restore" in write.argv:
            items += _ipsets(write.stdin, _kernel_sets(reads))
        elif name == "ip" and "-batch" in write.argv:
            items += _ip_batch(write.stdin)
        elif name == "sysctl":  # an interface's settings are written together: show each
            have = _kernel_sysctls(reads)  # one that differs
            for arg in write.argv[1:]:
                key, sep, value = arg.partition("=")
                if sep and have.get(key) != value:
                    items.append(Drift("sysctl", key, missing=(arg,)))
        elif name == "conntrack":
            continue  # flow clean-up follows route changes, which are reported themselves
        else:
            command = " ".join(write.argv)
            body = tuple(ln for ln in write.stdin.splitlines() if ln.strip())
            items.append(Drift("other", command, missing=body or (command,)))
    return items


def render_text(items: Iterable[Drift]) -> str:
    lines = []
    for item in items:
        lines.append(f"{item.kind} {item.subject}:")
        lines += [f"  + {text}" for text in item.missing]
        lines += [f"  - {text}" for text in item.unexpected]
    return "\n".join(lines) + ("\n" if lines else "")


def _kernel_tables(reads: Mapping[tuple[str, ...], str], save_tool: str) -> dict[str, _Table]:
    """The last whole-family or per-table save of `save_tool` (a name like iptables-nft-save)."""
    tables: dict[str, _Table] = {}
    for argv, out in reads.items():
        if argv[0] != save_tool:
            continue
        current: _Table | None = None
        for line in out.splitlines():
            if line.startswith("*"):
                current = tables.setdefault(line[1:].strip(), _Table())
                current.chains.clear()
            elif current is not None and line.startswith(":"):
                current.chains.setdefault(line[1:].split(" ", 1)[0], [])
            elif current is not None and line.startswith("-A "):
                current.chains.setdefault(line.split(" ", 2)[1], []).append(line)
    return tables


def _hash(line: str) -> str | None:
    found = _HASH.search(line)
    return found.group(1) if found else None


def _iptables(version: str, text: str, kernel: Mapping[str, _Table]) -> list[Drift]:
    items: list[Drift] = []
    table = ""
    written: dict[str, list[str]] = {}
    hooked: dict[str, list[str]] = {}
    deleted: list[str] = []
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":"):
            written[line[1:].split(" ", 1)[0]] = []
        elif line.startswith(("-A ", "-I ")):
            chain = line.split(" ", 2)[1]
            if chain in written:
                written[chain].append(line)
            else:
                hooked.setdefault(chain, []).append(line)
        elif line.startswith("-X "):
            deleted.append(line.split()[1])
        elif line == "COMMIT":
            items += _table_drift(version, table, kernel.get(table, _Table()), written, hooked)
            items += [
                Drift("iptables", f"{version} {table} {chain}", unexpected=("the whole chain",))
                for chain in deleted
            ]
            written, hooked, deleted = {}, {}, []
    return items


def _table_drift(
    version: str,
    table: str,
    kernel: _Table,
    written: Mapping[str, list[str]],
    hooked: Mapping[str, list[str]],
) -> list[Drift]:
    items = []
    for chain, wanted in sorted({**written, **hooked}.items()):
        have = kernel.chains.get(chain)
        subject = f"{version} {table} {chain}"
        if have is None:
            items.append(Drift("iptables", subject, missing=("the whole chain", *wanted)))
            continue
        if not chain.startswith(CHAIN_PREFIX):  # a kernel chain: only our rules count
            have = [ln for ln in have if _hash(ln) is not None]
        wanted_hashes = {_hash(ln) for ln in wanted}
        have_hashes = {_hash(ln) for ln in have}
        missing = tuple(ln for ln in wanted if _hash(ln) not in have_hashes)
        unexpected = tuple(ln for ln in have if _hash(ln) is None or _hash(ln) not in wanted_hashes)
        if not missing and not unexpected:
            unexpected = ("(our rules, out of order)",)
        items.append(Drift("iptables", subject, missing, unexpected))
    return items


def _kernel_sysctls(reads: Mapping[tuple[str, ...], str]) -> dict[str, str]:
    return {
        k: v
        for argv, out in reads.items()
        if argv[0] == "sysctl"
        for k, v in parse_sysctl_output(out).items()
    }


def _kernel_sets(reads: Mapping[tuple[str, ...], str]) -> dict[str, set[str]]:
    sets: dict[str, set[str]] = {}
    for argv, out in reads.items():
        if argv[:2] != ("ipset", "save"):
            continue
        for line in out.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "create":
                sets[words[1]] = set()
            elif len(words) >= 3 and words[0] == "add":
                sets.setdefault(words[1], set()).add(words[2])
    return sets


def _ipsets(text: str, kernel: Mapping[str, set[str]]) -> list[Drift]:
    created: dict[str, set[str]] = {}
    added: dict[str, list[str]] = {}
    removed: dict[str, list[str]] = {}
    destroyed: list[str] = []
    swapped: dict[str, str] = {}  # temp -> main
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2:
            continue
        verb, name = words[0], words[1]
        if verb == "create":
            created[name] = set()
        elif verb == "add" and len(words) >= 3:
            if name in created:
                created[name].add(words[2])
            else:
                added.setdefault(name, []).append(words[2])
        elif verb == "del" and len(words) >= 3:
            removed.setdefault(name, []).append(words[2])
        elif verb == "swap" and len(words) >= 3:
            swapped[name] = words[2]
        elif verb == "destroy":
            destroyed.append(name)
    items = []
    for temp, main in swapped.items():
        want, have = created.pop(temp, set()), kernel.get(main, set())
        items.append(Drift("ipset", main, tuple(sorted(want - have)), tuple(sorted(have - want))))
    for name, members in created.items():
        if name in kernel:  # recreated: wrong type or family
            items.append(Drift("ipset", name, ("(recreated with the right type)",)))
        else:
            items.append(Drift("ipset", name, ("the whole set", *sorted(members))))
    for name in sorted(set(added) | set(removed)):
        items.append(Drift("ipset", name, tuple(added.get(name, ())), tuple(removed.get(name, ()))))
    temps = set(swapped)
    items += [
        Drift("ipset", name, unexpected=("the whole set",))
        for name in destroyed
        if name not in temps and name in kernel
    ]
    return items


def _ip_batch(text: str) -> list[Drift]:
    items = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3:
            continue
        what, verb = words[0], words[1]
        target = " ".join(words[2:])
        if verb in ("replace", "add"):
            items.append(Drift(what, words[2], missing=(target,)))
        elif verb in ("del", "delete"):
            items.append(Drift(what, words[2], unexpected=(target,)))
        else:
            items.append(Drift("other", what, missing=(line,)))
    return items
