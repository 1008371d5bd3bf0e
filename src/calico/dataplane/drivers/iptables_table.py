"""Reconciles one kernel table (filter, raw, mangle...) of one IP family with desired chains.

Role: managers call `update_chains`/`remove_chains`/`set_hooks` (no I/O); the loop calls
`apply()`, which writes the difference in ONE `iptables-restore --noflush` transaction.

Ownership: chains named "cali-*" are ours; in other chains, only rules whose first comment is
"cali:<hash>" are (our hooks). Everything else in the table is never touched. `iptables-save`
is parsed for just that: per chain, the list of rule hashes (None for foreign rules), plus
which cali chains foreign rules jump to.

Diff: a chain whose hash list differs from the desired one is rewritten whole (declaring it
flushes it), an unchanged chain is not written at all, so its packet counters survive. Stale
cali chains are flushed, unhooked and deleted in the same transaction; a stale chain still
referenced by a foreign rule is only emptied. A jump to a cali chain nobody provided gets a
drop-all stub chain (fail closed; in the nat table, which is not for filtering, an empty
one) rather than failing the whole transaction. Hooks must sit
at the top of their kernel chain (insert mode), appended ones after them; if not, all our
rules in that chain are deleted (by number, re-reading the table first) and re-added.

The kernel view is cached after a successful write and re-read on the first apply, after any
failure, and after `resync()` (periodic refresh), so a quiet apply costs nothing;
`apply_tables` reads all the tables of a family that need it with one `iptables-save`, and
writes a table a chain moves into before the one it leaves (a policy changing kind must never
be enforced in neither table, even if Felix dies between the two transactions).
Planning is incremental: only chains changed since the last write (edited, removed, or
gaining or losing their last reference, hence a stub) are compared with the kernel view,
except after a read.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

from calico.dataplane.drivers.iptables_render import TableUpdate, hook_hashes, render_update
from calico.programs import CommandFailed, CommandRunner
from calico.rules.config import InsertMode
from calico.rules.model import DROP, Chain, Hook, Rule
from calico.rules.naming import CHAIN_PREFIX, RULE_HASH_PREFIX

_log = logging.getLogger(__name__)
_HASH_RE = re.compile(r'--comment "?' + re.escape(RULE_HASH_PREFIX) + r'([A-Za-z0-9_-]+)"?')
_TARGET_RE = re.compile(r"(?:^|\s)(?:-j|-g|--jump|--goto) (\S+)")
BACKENDS = ("nft", "legacy")


@dataclass
class KernelTable:
    """What we know of a kernel table: rule hashes per chain (None: not ours)."""

    chains: dict[str, list[str | None]] = field(default_factory=dict)
    foreign_refs: set[str] = field(default_factory=set)


def parse_save(text: str) -> KernelTable:
    return _parse_lines(text.splitlines())


def _parse_lines(lines: Iterable[str]) -> KernelTable:
    """One table's lines of an `iptables-save`. Runs on every refresh over every rule (~36k per
    family at scale L), so the jump-target search is done only where it can matter: rules
    of kernel chains that carry no hash of ours (a foreign rule jumping into our chains)."""
    state = KernelTable()
    chains = state.chains
    for line in lines:
        if line.startswith(":"):
            chains.setdefault(line[1:].split(" ", 1)[0], [])
        elif line.startswith("-A "):
            chain = line.split(" ", 2)[1]
            found = _HASH_RE.search(line)
            chains.setdefault(chain, []).append(found.group(1) if found else None)
            if not found and not chain.startswith(CHAIN_PREFIX):
                target = _TARGET_RE.search(line)
                if target and target.group(1).startswith(CHAIN_PREFIX):
                    state.foreign_refs.add(target.group(1))
    return state


def parse_save_tables(text: str) -> dict[str, KernelTable]:
    """Every table in a whole-family `iptables-save`."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("*"):
            current = sections.setdefault(line[1:].strip(), [])
        else:
            current.append(line)
    return {name: _parse_lines(lines) for name, lines in sections.items()}


class _Desired(NamedTuple):
    chain: Chain
    hashes: list[str]
    targets: set[str]


def stub_chain(name: str, table: str = "filter") -> Chain:
    if table == "nat":  # no DROP in nat: an unprogrammed NAT chain simply translates nothing
        return Chain(name)
    return Chain(name, (Rule(action=DROP, comment=("Stub: chain not programmed",)),))


def tool(ip_version: int, backend: str, verb: str) -> str:
    return f"{'ip6' if ip_version == 6 else 'ip'}tables-{backend}-{verb}"


def detect_backend(runner: CommandRunner, saves: dict[tuple[str, int], str] | None = None) -> str:
    """Like Felix's "auto": the backend already holding Calico chains, else the one holding
    more rules (kube-proxy and friends picked it), else nft. `saves` receives what each
    (backend, IP version) save printed, for a caller that can tell it is still current."""
    scores: dict[str, tuple[int, int]] = {}
    for backend in BACKENDS:
        cali = rules = 0
        for version in (4, 6):
            try:
                out = runner.run([tool(version, backend, "save")]).stdout
            except CommandFailed:
                continue
            if saves is not None:
                saves[(backend, version)] = out
            cali += sum(line.startswith(f":{CHAIN_PREFIX}") for line in out.splitlines())
            rules += sum(line.startswith("-A ") for line in out.splitlines())
        scores[backend] = (cali, rules)
    if scores["legacy"] > scores["nft"]:
        return "legacy"
    return "nft"


class IptablesTable:
    def __init__(
        self,
        table: str,
        ip_version: int,
        runner: CommandRunner,
        *,
        backend: str = "auto",
        insert_mode: InsertMode = "insert",
    ) -> None:
        if backend not in (*BACKENDS, "auto"):
            raise ValueError(f"unknown iptables backend {backend!r}")
        self.table = table
        self.ip_version = ip_version
        self._runner = runner
        self._backend = None if backend == "auto" else backend
        self._insert_mode = insert_mode
        self._chains: dict[str, _Desired] = {}
        self._hooks: dict[str, Hook] = {}
        self._refs: Counter[str] = Counter()  # jump targets: of each chain, of all hooks
        self._changed: set[str] = set()  # chains whose kernel state may be due a change
        self._kernel: KernelTable | None = None
        self._dirty = True
        self._hooks_changed = True
        self._refreshing = False  # the next read re-checks a view we had: counts drift
        self.drift_repaired = 0  # chains a refresh found changed behind our back
        self.commits = 0  # successful restores: one kernel transaction each (one table)

    @property
    def dirty(self) -> bool:
        return self._dirty or self._kernel is None

    @property
    def needs_read(self) -> bool:
        """The next apply starts by reading the kernel table."""
        return self._kernel is None

    @property
    def backend(self) -> str:
        if self._backend is None:
            self._backend = detect_backend(self._runner)
            _log.info("iptables backend for %s/v%d: %s", self.table, self.ip_version, self._backend)
        return self._backend

    def use_backend(self, backend: str) -> None:
        """Settle "auto" with the backend detected once for every table."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown iptables backend {backend!r}")
        self._backend = backend

    def chain_names(self) -> set[str]:
        return set(self._chains)

    def update_chains(self, chains: Iterable[Chain]) -> None:
        for chain in chains:
            if not chain.name.startswith(CHAIN_PREFIX):
                raise ValueError(f"chain {chain.name!r} lacks the {CHAIN_PREFIX!r} prefix")
            old = self._chains.get(chain.name)
            if old is None or old.chain != chain:
                new = _Desired(chain, chain.rule_hashes(), chain.targets())
                self._chains[chain.name] = new
                self._retarget(old.targets if old else set(), new.targets)
                self._changed.add(chain.name)
                self._dirty = True

    def remove_chains(self, names: Iterable[str]) -> None:
        for name in names:
            old = self._chains.pop(name, None)
            if old is not None:
                self._retarget(old.targets, set())
                self._changed.add(name)
                self._dirty = True

    def set_hooks(self, hooks: Iterable[Hook]) -> None:
        """Replace all our rules in kernel chains (INPUT, FORWARD...) with `hooks`."""
        new = {h.chain: h for h in hooks}
        if new != self._hooks:
            self._retarget(_hook_targets(self._hooks.values()), _hook_targets(new.values()))
            self._hooks = new
            self._hooks_changed = True
            self._dirty = True

    def resync(self) -> None:
        """Distrust the cached kernel view: the next apply re-reads and repairs the table."""
        self._refreshing = self._refreshing or self._kernel is not None
        self._kernel = None
        self._dirty = True

    def full_resync(self) -> None:
        """Re-read the kernel table and repair any drift now."""
        self.resync()
        self.apply()

    def apply(self, fresh_view: KernelTable | None = None) -> None:
        """Write pending changes in one transaction; on failure stay dirty and raise.
        `fresh_view` is this table as the caller has just read it, if it needs a read."""
        if not self.dirty:
            return
        fresh = self._kernel is None
        kernel = self._kernel
        if kernel is None:
            kernel = fresh_view if fresh_view is not None else self._load()
        update = self._plan(kernel, self._all_names(kernel) if fresh else self._changed)
        if update.hook_deletes and not fresh:
            kernel = self._load()  # rule numbers must be current
            update = self._plan(kernel, self._all_names(kernel))
        if not update.is_empty():
            self._restore(render_update(update))
            _record(kernel, update, self._insert_mode)
            if fresh and self._refreshing:
                self._count_drift(update)
        self._kernel = kernel
        self._changed.clear()
        self._dirty = self._hooks_changed = self._refreshing = False

    def _count_drift(self, update: TableUpdate) -> None:
        """What a refresh rewrote that we had not changed: someone else's edits, undone."""
        names = {c.name for c, _ in update.write} | set(update.flush) | set(update.delete)
        repaired = sorted(names - self._changed)
        if not self._hooks_changed:
            repaired += sorted({h.chain for h in update.hooks})
        if repaired:
            self.drift_repaired += len(repaired)
            _log.warning(
                "refresh repaired drift in %s/v%d: %d chain(s) changed outside Felix: %s",
                self.table,
                self.ip_version,
                len(repaired),
                " ".join(repaired[:10]) + (" ..." if len(repaired) > 10 else ""),
            )

    def _load(self) -> KernelTable:
        out = self._runner.run([tool(self.ip_version, self.backend, "save"), "-t", self.table])
        return parse_save(out.stdout)

    def _restore(self, text: str) -> None:
        args = [tool(self.ip_version, self.backend, "restore"), "--noflush", "--wait"]
        try:
            self._runner.run(args, stdin=text)
            self.commits += 1
        except CommandFailed as exc:
            self._kernel = None
            numbered = "\n".join(f"{i:5d} {line}" for i, line in enumerate(text.splitlines(), 1))
            _log.error("%s failed: %s\ninput was:\n%s", args[0], exc.stderr.strip(), numbered)
            raise

    def _retarget(self, old: set[str], new: set[str]) -> None:
        """Moves references; a chain gaining its first or losing its last one may need a stub
        or lose it, so it is due a check."""
        for name in old - new:
            self._refs[name] -= 1
            if not self._refs[name]:
                del self._refs[name]
                self._changed.add(name)
        for name in new - old:
            self._refs[name] += 1
            if self._refs[name] == 1:
                self._changed.add(name)

    def _all_names(self, kernel: KernelTable) -> set[str]:
        """Every chain that exists or should: what a plan after a fresh read must check."""
        return kernel.chains.keys() | self._chains.keys() | self._refs.keys()

    def _expected(self, name: str) -> _Desired | None:
        """The chain we want under `name`: provided, a stub if only referenced, or none."""
        desired = self._chains.get(name)
        if desired is None and name in self._refs and name.startswith(CHAIN_PREFIX):
            _log.warning("chain %s/%s is referenced but not provided: stubbing", self.table, name)
            stub = stub_chain(name, self.table)
            desired = _Desired(stub, stub.rule_hashes(), set())
        return desired

    def _plan(self, kernel: KernelTable, names: Iterable[str]) -> TableUpdate:
        """The transaction bringing chains `names` (and all hooks) in line with the kernel."""
        write: list[tuple[Chain, Sequence[str]]] = []
        stale: list[str] = []
        for name in sorted(names):
            desired = self._expected(name)
            if desired is not None:
                if kernel.chains.get(name) != desired.hashes:
                    write.append((desired.chain, desired.hashes))
            elif name in kernel.chains and name.startswith(CHAIN_PREFIX):
                stale.append(name)
        kept = [n for n in stale if n in kernel.foreign_refs]
        flush = [n for n in stale if n not in kept or kernel.chains[n]]
        hook_deletes, hooks = self._plan_hooks(kernel)
        return TableUpdate(
            self.table,
            write=write,
            flush=flush,
            hook_deletes=hook_deletes,
            hooks=hooks,
            delete=[n for n in stale if n not in kept],
            insert_mode=self._insert_mode,
        )

    def _plan_hooks(self, kernel: KernelTable) -> tuple[list[tuple[str, int]], list[Hook]]:
        deletes: list[tuple[str, int]] = []
        rewrite: list[Hook] = []
        hooked = {
            n for n, hs in kernel.chains.items() if not n.startswith(CHAIN_PREFIX) and any(hs)
        }
        for chain in sorted(hooked | self._hooks.keys()):
            hook = self._hooks.get(chain, Hook(chain))
            current = kernel.chains.get(chain, [])
            if _hooks_in_place(current, hook, self._insert_mode):
                continue
            ours = [i for i, h in enumerate(current, 1) if h is not None]
            deletes += [(chain, i) for i in reversed(ours)]
            rewrite.append(hook)
        return deletes, rewrite


def _hook_targets(hooks: Iterable[Hook]) -> set[str]:
    return set().union(*(Chain(h.chain, (*h.insert, *h.append)).targets() for h in hooks))


def _hooks_in_place(current: Sequence[str | None], hook: Hook, insert_mode: str) -> bool:
    ins, app = hook_hashes(hook)
    ours = [h for h in current if h is not None]
    if ours != ins + app:
        return False
    return insert_mode != "insert" or list(current[: len(ins)]) == ins


def _record(kernel: KernelTable, update: TableUpdate, insert_mode: str) -> None:
    """Bring the cached kernel view up to date with a transaction that succeeded."""
    for chain, hashes in update.write:
        kernel.chains[chain.name] = list(hashes)
    for name in update.flush:
        kernel.chains[name] = []
    for name in update.delete:
        del kernel.chains[name]
    for hook in update.hooks:
        ins, app = hook_hashes(hook)
        foreign: list[str | None] = [h for h in kernel.chains.get(hook.chain, []) if h is None]
        top: list[str | None] = list(ins)
        kernel.chains[hook.chain] = (
            top + foreign + list(app) if insert_mode == "insert" else foreign + top + list(app)
        )


def apply_tables(
    tables: Sequence[IptablesTable], saved: Mapping[tuple[str, int], str] | None = None
) -> None:
    """Applies `tables`, in order except where a chain moves between them (see
    `_write_order`). Those of one family (and backend) that need a kernel read share one
    whole-family `iptables-save`, or take `saved`'s (backend, IP version) text: a save the
    caller knows is still current.

    The families are written side by side, each in its own order, when every one of them
    reads its tables first or has `SIDE_BY_SIDE_CHANGES` chains to check (a start, a
    refresh, a large change), else one after the other. With nft a commit by one family
    makes a restore of the other that is under way start over (the ruleset generation
    moved), so side by side costs CPU: at scale L (36,000 rules a family, an empty
    namespace, 4 runs each) 1.2-1.3 s against 1.6-1.8 s, for 1.9 s of CPU against 1.7 s.
    Small writes (churn) gain no time that way and would pay the restarts."""
    unread: dict[tuple[int, str], list[IptablesTable]] = {}
    for table in tables:
        if table.needs_read:
            unread.setdefault((table.ip_version, table.backend), []).append(table)
    views: dict[IptablesTable, KernelTable] = {}
    for (ip_version, backend), group in unread.items():
        out = (saved or {}).get((backend, ip_version))
        if out is None and len(group) > 1:
            out = group[0]._runner.run([tool(ip_version, backend, "save")]).stdout
        if out is not None:
            read = parse_save_tables(out)
            views.update({t: read.get(t.table, KernelTable()) for t in group})
    families: dict[int, list[IptablesTable]] = {}
    for table in _write_order(tables, views):
        families.setdefault(table.ip_version, []).append(table)
    if len(families) > 1 and all(map(_large, families.values())):
        with ThreadPoolExecutor(len(families), thread_name_prefix="felix-iptables") as pool:
            done = [pool.submit(_apply_in_order, g, views) for g in families.values()]
        for future in done:  # all have ended: the first failure, if any, is raised
            future.result()
    else:
        for group in families.values():
            _apply_in_order(group, views)


SIDE_BY_SIDE_CHANGES = 500


def _large(tables: Sequence[IptablesTable]) -> bool:
    return any(t.needs_read or len(t._changed) >= SIDE_BY_SIDE_CHANGES for t in tables)


def _apply_in_order(
    tables: Sequence[IptablesTable], views: dict[IptablesTable, KernelTable]
) -> None:
    for table in tables:
        table.apply(views.get(table))


def _write_order(
    tables: Sequence[IptablesTable], views: dict[IptablesTable, KernelTable]
) -> list[IptablesTable]:
    """`tables` with each table that a cali chain arrives in before the tables of its family
    it leaves: a policy changing kind moves from raw (doNotTrack) or mangle (preDNAT) to
    filter or back, and each table is its own transaction, so writing the table it leaves
    first would leave it enforced nowhere until the other is written (fail open), and if
    Felix dies in between, until its restart has synced. Otherwise the given order is kept.
    Two chains moving opposite ways at once admit no such order: the given one is kept,
    with a warning."""
    moves: dict[IptablesTable, tuple[set[str], set[str]]] = {}  # arriving, leaving
    for table in tables:
        kernel = table._kernel if table._kernel is not None else views.get(table)
        if table.dirty and kernel is not None:
            here = {n for n in kernel.chains if n.startswith(CHAIN_PREFIX)}
            moves[table] = (table.chain_names() - here, here - table.chain_names())
    after = {
        t: {o for o in moves if o is not t and o.ip_version == t.ip_version and m[1] & moves[o][0]}
        for t, m in moves.items()
    }  # t leaves a chain that each of these gains: they go first
    order: list[IptablesTable] = []
    pending = list(tables)
    while pending:
        ready = next((t for t in pending if not (after.get(t, set()) & set(pending))), None)
        if ready is None:
            _log.warning("chains move both ways between tables: %s", [t.table for t in pending])
            return order + pending
        order.append(ready)
        pending.remove(ready)
    return order
