"""In-memory stand-ins for the kernel Felix's dataplane drivers program, for pure unit tests
(the kernel tests run the same drivers against a real kernel in a namespace).

Each speaks the dialect of the real thing: `FakeIptables` is a CommandRunner answering
`iptables-save`/`iptables-restore` with the kernel's transaction rules, `FakeKernel` one
answering `ip -j ... -batch` with routes, links and neighbours (`FakeNetlink` is the pyroute2
slice that writes into it), `FakeIPSet` and `FakeSysctl` answer `ipset` and `sysctl`.
`RecordingTable` takes chains where an IptablesTable would; `NoCommands` and `RecordingRunner`
refuse or record commands.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from calico.dataplane.drivers.routetable import RTPROT_CALICO
from calico.programs import CommandFailed, CommandResult, CommandRunner
from calico.rules.model import Chain


class NoCommands:
    """A CommandRunner for code that must not touch the kernel: every command is an error."""

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        raise AssertionError(f"unexpected command {list(args)}")


class RecordingRunner:
    """Wraps a CommandRunner (a real `programs.Runner`, usually) and records what it ran."""

    def __init__(self, inner: CommandRunner) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        self.calls.append(list(args))
        return self.inner.run(args, stdin=stdin, check=check)


class RecordingTable:
    """Takes chains where an IptablesTable would (a manager's output), keeping the latest of
    each by name; `updates` counts chains written."""

    def __init__(self, table: str, ip_version: int) -> None:
        self.table = table
        self.ip_version = ip_version
        self.chains: dict[str, Chain] = {}
        self.updates = 0

    def update_chains(self, chains: Iterable[Chain]) -> None:
        for chain in chains:
            self.chains[chain.name] = chain
            self.updates += 1

    def remove_chains(self, names: Iterable[str]) -> None:
        for name in names:
            self.chains.pop(name, None)


BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
}
TARGETS = {"ACCEPT", "DROP", "REJECT", "RETURN", "MARK", "LOG", "NOTRACK", "MASQUERADE"}
_TARGET = re.compile(r"(?:^|\s)-[jg] (\S+)")


class FakeIptables:
    """Tables as {table: {chain: [rule text]}}; a restore is atomic per transaction, and
    enforces what the kernel does: targets must exist, -X needs an empty unreferenced chain."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, list[str]]] = {}
        self.calls: list[list[str]] = []
        self.restores: list[str] = []
        self.fail_next = False

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        self.calls.append(list(args))
        if args[0].endswith("-save") and "-t" in args:
            return CommandResult(0, self.save(args[args.index("-t") + 1]), "")
        if args[0].endswith("-save"):
            return CommandResult(0, "".join(self.save(t) for t in sorted(self.tables)), "")
        assert args[0].endswith("-restore") and "--noflush" in args and stdin is not None
        self.restores.append(stdin)
        if self.fail_next:
            self.fail_next = False
            raise CommandFailed(args, 1, "", "iptables-restore: line 2 failed")
        self.tables = self._transaction(stdin)
        return CommandResult(0, "", "")

    def table(self, name: str) -> dict[str, list[str]]:
        return self.tables.setdefault(name, {c: [] for c in BUILTIN_CHAINS[name]})

    def save(self, table: str) -> str:
        chains = self.table(table)
        lines = [f"*{table}"]
        lines += [
            f":{c} ACCEPT [0:0]" if c in BUILTIN_CHAINS[table] else f":{c} - [0:0]" for c in chains
        ]
        lines += [f"-A {c} {r}" for c, rules in chains.items() for r in rules]
        return "\n".join([*lines, "COMMIT", ""])

    def _transaction(self, text: str) -> dict[str, dict[str, list[str]]]:
        tables = copy.deepcopy(self.tables)
        cur: dict[str, list[str]] = {}
        for line in text.splitlines():
            op, _, rest = line.partition(" ")
            if line.startswith("*"):
                self.table(line[1:])
                tables.setdefault(line[1:], copy.deepcopy(self.tables[line[1:]]))
                cur = tables[line[1:]]
            elif line.startswith(":"):
                cur[line[1:].split()[0]] = []
            elif op in ("-A", "-I"):
                self._add(cur, op, rest)
            elif op == "-D":
                chain, num = rest.split()
                del cur[chain][int(num) - 1]
            elif op == "-F":
                cur[rest][:] = []
            elif op == "-X":
                self._delete(cur, rest)
            else:
                assert line == "COMMIT", line
        return tables

    def _add(self, cur: dict[str, list[str]], op: str, rest: str) -> None:
        chain, _, spec = rest.partition(" ")
        target = _TARGET.search(spec)
        if target and target.group(1) not in TARGETS and target.group(1) not in cur:
            raise CommandFailed(["restore"], 1, "", f"no chain {target.group(1)}")
        if op == "-A":
            cur[chain].append(spec)
        else:
            num, _, spec = spec.partition(" ")
            cur[chain].insert(int(num) - 1, spec)

    def _delete(self, cur: dict[str, list[str]], name: str) -> None:
        refs = [r for rules in cur.values() for r in rules if re.search(rf"-[jg] {name}( |$)", r)]
        if cur[name] or refs:
            raise CommandFailed(["restore"], 1, "", f"CHAIN_DEL failed (busy): {name}")
        del cur[name]


@dataclass
class FakeRoute:
    """A FakeKernel route: its device and the attributes RouteTable reads."""

    dev: str
    proto: int = RTPROT_CALICO
    scope: int = 253
    gateway: str | None = None


@dataclass
class FakeKernel:
    """One routing table (254), links and permanent neighbours, for both IP versions."""

    links: dict[str, tuple[int, bool]] = field(default_factory=dict)
    routes: dict[tuple[str, int], FakeRoute] = field(default_factory=dict)  # (cidr, metric)
    neighs: dict[tuple[str, str], str] = field(default_factory=dict)  # (addr, dev) -> MAC
    commands: list[list[str]] = field(default_factory=list)
    netlink_calls: list[str] = field(default_factory=list)
    fail_lines_matching: str | None = None
    netlink_fails: bool = False

    def link(self, name: str, up: bool = True) -> None:
        self.links[name] = (self.links.get(name, (len(self.links) + 2, up))[0], up)

    def add_route(self, cidr: str, dev: str, metric: int | None = None, **kw: Any) -> None:
        self.routes[(cidr, _metric(cidr) if metric is None else metric)] = FakeRoute(dev, **kw)

    def table(self) -> dict[str, tuple[str, int]]:
        """CIDR -> (dev, proto), for assertions."""
        return {cidr: (r.dev, r.proto) for (cidr, _), r in self.routes.items()}

    @property
    def writes(self) -> list[list[str]]:
        return [c for c in self.commands if "-force" in c]

    # CommandRunner
    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        self.commands.append(list(args))
        assert args[0] == "ip" and args[-2:] == ["-batch", "-"] and stdin is not None
        if "-j" in args:
            return CommandResult(0, "".join(self._show(ln) + "\n" for ln in stdin.splitlines()), "")
        failed = [ln for ln in stdin.splitlines() if not self._write(ln.split())]
        if failed and check:
            raise CommandFailed(args, 1, "", f"Command failed -:{failed[0]}")
        return CommandResult(1 if failed else 0, "", "")

    def _show(self, line: str) -> str:
        if line == "link show":
            up = {True: "UP", False: "DOWN"}
            out = [
                {"ifindex": i, "ifname": n, "operstate": up[u]} for n, (i, u) in self.links.items()
            ]
        elif line.startswith("route show table 254"):
            out = [self._route_json(cidr, m, r) for (cidr, m), r in self.routes.items()]
        else:
            assert line == "neigh show nud permanent"
            out = [{"dst": a, "dev": d, "lladdr": m} for (a, d), m in self.neighs.items()]
        return json.dumps(out)

    @staticmethod
    def _route_json(cidr: str, metric: int, r: FakeRoute) -> dict[str, Any]:
        dst = cidr.removesuffix("/128" if ":" in cidr else "/32")
        out: dict[str, Any] = {"dst": dst, "dev": r.dev, "flags": []}
        if r.proto != 3:
            out["protocol"] = str(r.proto)
        if r.scope and ":" not in cidr:
            out["scope"] = str(r.scope)
        if metric or ":" in cidr:
            out["metric"] = metric
        if r.gateway:
            out["gateway"] = r.gateway
        return out

    def _write(self, words: list[str]) -> bool:
        if self.fail_lines_matching and self.fail_lines_matching in " ".join(words):
            return False
        opts = dict(zip(words[3::2], words[4::2], strict=False))
        if words[:2] == ["route", "replace"]:
            return self.replace(words[2], opts["dev"], int(opts["proto"]))
        if words[:2] == ["route", "del"]:
            key = (words[2], int(opts["metric"]))
            found = self.routes.get(key)
            if found is None or found.dev != opts["dev"] or found.proto != int(opts["proto"]):
                return False
            del self.routes[key]
            return True
        if words[:2] == ["neigh", "replace"]:
            self.neighs[(words[2], opts["dev"])] = opts["lladdr"]
            return opts["dev"] in self.links
        assert words[:2] == ["neigh", "del"]
        return self.neighs.pop((words[2], words[4]), None) is not None

    def replace(self, cidr: str, dev: str, proto: int) -> bool:
        if dev not in self.links:
            return False
        self.routes[(cidr, _metric(cidr))] = FakeRoute(dev, proto)
        return True

    def dev(self, index: int) -> str:
        return next(name for name, (i, _) in self.links.items() if i == index)


class FakeNetlink:
    """The pyroute2 IPRoute slice RouteTable uses, writing into a FakeKernel."""

    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel
        kernel.netlink_calls.append("open")

    def route(self, command: str, **kw: Any) -> None:
        self._record(f"route {command}")
        cidr = f"{kw['dst']}/{kw['dst_len']}"
        dev = self.kernel.dev(kw["oif"])
        if command == "replace":
            assert kw["scope"] == 253 and kw["table"] == 254
            assert self.kernel.replace(cidr, dev, kw["proto"])
        else:
            assert kw["scope"] == 255  # any scope; the kernel's default would not match
            assert self.kernel.routes.pop((cidr, kw["priority"])).dev == dev

    def neigh(self, command: str, **kw: Any) -> None:
        self._record(f"neigh {command}")
        key = (kw["dst"], self.kernel.dev(kw["ifindex"]))
        if command == "replace":
            assert kw["state"] == 0x80
            self.kernel.neighs[key] = kw["lladdr"]
        else:
            del self.kernel.neighs[key]

    def close(self) -> None:
        self.kernel.netlink_calls.append("close")

    def _record(self, what: str) -> None:
        if self.kernel.netlink_fails:
            raise OSError(f"{what}: injected failure")
        self.kernel.netlink_calls.append(what)


def _metric(cidr: str) -> int:
    return 1024 if ":" in cidr else 0


@dataclass
class FakeSet:
    """One FakeIPSet set."""

    type: str
    family: str
    members: set[str] = field(default_factory=set)


class FakeIPSet:
    """Kernel IP sets behind `ipset save` / `ipset -exist restore`. Like `ipset restore`,
    lines apply one by one and stop at an error."""

    def __init__(self) -> None:
        self.sets: dict[str, FakeSet] = {}
        self.in_use: set[str] = set()  # referenced by iptables: destroy fails
        self.calls: list[list[str]] = []
        self.restores: list[list[str]] = []

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        self.calls.append(list(args))
        if list(args) == ["ipset", "save"]:
            lines = []
            for name, s in self.sets.items():
                lines += [f"create {name} {s.type} family {s.family} hashsize 1024 maxelem 65536"]
                lines += [f"add {name} {m}" for m in sorted(s.members)]
            return CommandResult(0, "".join(f"{line}\n" for line in lines), "")
        assert list(args) == ["ipset", "-exist", "restore"] and stdin is not None
        self.restores.append(stdin.splitlines())
        for line in stdin.splitlines():
            self._apply(line.split())
        return CommandResult(0, "", "")

    def _apply(self, words: list[str]) -> None:
        op, name = words[0], words[1]
        if op == "create":
            self.sets.setdefault(name, FakeSet(words[2], words[4]))
        elif op == "add":
            self.sets[name].members.add(words[2])
        elif op == "del":
            self.sets[name].members.discard(words[2])
        elif op == "swap":
            self.sets[name], self.sets[words[2]] = self.sets[words[2]], self.sets[name]
        elif op == "destroy":
            if name in self.in_use or name not in self.sets:
                raise CommandFailed(["ipset", "restore"], 1, "", f"Set cannot be destroyed: {name}")
            del self.sets[name]
        else:
            raise AssertionError(words)


class FakeSysctl:
    """`sysctl NAME...` and `sysctl -w NAME=VALUE...` over a dict; `add_iface` gives an
    interface the per-interface keys Felix sets (a missing key fails as sysctl does)."""

    V4_KEYS = ("proxy_arp", "forwarding", "rp_filter", "route_localnet")
    V6_KEYS = ("proxy_ndp", "forwarding", "accept_ra")

    def __init__(self) -> None:
        self.values = {"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0"}
        self.calls: list[list[str]] = []

    def add_iface(self, iface: str) -> None:
        name = iface.replace(".", "/")
        self.values[f"net.ipv4.neigh.{name}.proxy_delay"] = "80"
        self.values |= {f"net.ipv4.conf.{name}.{k}": "0" for k in self.V4_KEYS}
        self.values |= {f"net.ipv6.conf.{name}.{k}": "1" for k in self.V6_KEYS}

    def del_iface(self, iface: str) -> None:
        name = iface.replace(".", "/")
        self.values = {k: v for k, v in self.values.items() if f".{name}." not in k}

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        self.calls.append(list(args))
        assert args[0] == "sysctl"
        out, failed = [], False
        if args[1] == "-w":
            for item in args[2:]:
                name, _, value = item.partition("=")
                failed |= name not in self.values
                if name in self.values:
                    self.values[name] = value
                    out.append(f"{name} = {value}")
        else:
            for name in args[1:]:
                failed |= name not in self.values
                if name in self.values:
                    out.append(f"{name} = {self.values[name]}")
        if failed and check:
            raise CommandFailed(args, 1, "", "sysctl: cannot stat /proc/sys/...")
        return CommandResult(int(failed), "".join(line + "\n" for line in out), "")
