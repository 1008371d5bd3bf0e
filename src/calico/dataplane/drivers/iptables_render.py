"""Pure: abstract chains and hooks -> `iptables-restore` text.

Every rule we write carries `-m comment --comment "cali:<hash>"` first, the only thing the
table driver reads back from `iptables-save`. Hook rules in kernel chains are hashed with
the kernel chain's name as seed; the ones appended at its end use "<chain>-append", so an
identical inserted and appended rule still get different IDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from calico.rules.model import Chain, Hook, Rule, chained_hashes
from calico.rules.naming import RULE_HASH_PREFIX


def rule_line(command: str, rule: Rule, rule_hash: str) -> str:
    """`command` is e.g. "-A cali-fw-cali1" or "-I INPUT 1"; the hash comment comes first."""
    spec = rule.spec()
    head = f'{command} -m comment --comment "{RULE_HASH_PREFIX}{rule_hash}"'
    return f"{head} {spec}" if spec else head


def chain_lines(chain: Chain, hashes: Sequence[str]) -> list[str]:
    return [rule_line(f"-A {chain.name}", r, h) for r, h in zip(chain.rules, hashes, strict=True)]


def hook_hashes(hook: Hook) -> tuple[list[str], list[str]]:
    """IDs of a hook's inserted rules and of its appended rules."""
    return chained_hashes(hook.chain, hook.insert), chained_hashes(
        f"{hook.chain}-append", hook.append
    )


def hook_lines(hook: Hook, *, insert_mode: str = "insert") -> list[str]:
    """Lines that put a hook's rules in place (the caller first removes any old ones)."""
    ins, app = hook_hashes(hook)
    inserted = zip(hook.insert, ins, strict=True)
    if insert_mode == "insert":
        lines = [rule_line(f"-I {hook.chain} {i}", r, h) for i, (r, h) in enumerate(inserted, 1)]
    else:
        lines = [rule_line(f"-A {hook.chain}", r, h) for r, h in inserted]
    appended = zip(hook.append, app, strict=True)
    return lines + [rule_line(f"-A {hook.chain}", r, h) for r, h in appended]


@dataclass(frozen=True, slots=True)
class TableUpdate:
    """One transaction on one table, in the order iptables-restore must see it."""

    table: str
    write: Sequence[tuple[Chain, Sequence[str]]] = ()  # chains (re)created, with rule hashes
    flush: Sequence[str] = ()  # chains emptied: those being deleted, or kept as still referenced
    hook_deletes: Sequence[tuple[str, int]] = ()  # (kernel chain, rule number), descending
    hooks: Sequence[Hook] = ()  # hooks whose rules are (re)inserted
    delete: Sequence[str] = ()  # chains removed once nothing refers to them
    insert_mode: str = "insert"

    def is_empty(self) -> bool:
        return not (self.write or self.flush or self.hook_deletes or self.hooks or self.delete)


def render_update(update: TableUpdate) -> str:
    """Declaring `:chain` creates it or, under --noflush, empties it: rewrites are whole-chain.

    Order: declare/flush first (dropping old references), then fill, then fix hooks, and
    only then delete chains, when no rule can still refer to them.
    """
    lines = [f"*{update.table}"]
    lines += [f":{chain.name} - [0:0]" for chain, _ in update.write]
    lines += [f"-F {name}" for name in update.flush]
    for chain, hashes in update.write:
        lines += chain_lines(chain, hashes)
    lines += [f"-D {chain} {num}" for chain, num in update.hook_deletes]
    for hook in update.hooks:
        lines += hook_lines(hook, insert_mode=update.insert_mode)
    lines += [f"-X {name}" for name in update.delete]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render_full(table: str, chains: Sequence[Chain], hooks: Sequence[Hook] = ()) -> str:
    """A whole table's Calico state as one restore transaction (golden files, debugging)."""
    written = [(c, c.rule_hashes()) for c in sorted(chains, key=lambda c: c.name)]
    return render_update(TableUpdate(table, write=written, hooks=hooks))
