"""IptablesTable against an in-memory iptables that simulates save/restore transactions."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico.dataplane.drivers.iptables_render import TableUpdate
from calico.dataplane.drivers.iptables_table import (
    SIDE_BY_SIDE_CHANGES,
    IptablesTable,
    KernelTable,
    apply_tables,
    detect_backend,
    parse_save,
    stub_chain,
)
from calico.programs import CommandFailed, CommandResult
from calico.rules import dispatch, static
from calico.rules.config import RulesConfig
from calico.rules.model import ANY, DROP, RETURN, Chain, Hook, Jump, Rule
from calico.testing.dataplane import FakeIptables

CFG = RulesConfig()


def calico_filter_chains() -> list[Chain]:
    return [
        *static.static_filter_chains(CFG, 4),
        *dispatch.workload_dispatch_chains(CFG, []),
        *dispatch.host_filter_dispatch_chains([]),
    ]


@pytest.fixture
def fake() -> FakeIptables:
    fake = FakeIptables()
    fake.tables["filter"] = {
        "INPUT": ["-s 198.18.9.9/32 -j ACCEPT"],
        "FORWARD": [],
        "OUTPUT": [],
        "FOREIGN": ["-j RETURN"],
    }
    return fake


@pytest.fixture
def table(fake: FakeIptables) -> IptablesTable:
    table = IptablesTable("filter", 4, fake, backend="nft")
    table.update_chains(calico_filter_chains())
    table.set_hooks(static.hooks(CFG, "filter"))
    table.apply()
    return table


def hash_of(rule_text: str) -> str | None:
    found = re.search(r'"cali:([^"]+)"', rule_text)
    return found.group(1) if found else None


def test_first_apply_writes_everything_in_one_restore(
    fake: FakeIptables, table: IptablesTable
) -> None:
    assert len(fake.restores) == 1
    assert [c[0] for c in fake.calls] == ["iptables-nft-save", "iptables-nft-restore"]
    filt = fake.tables["filter"]
    assert filt["INPUT"][0].endswith("-j cali-INPUT")
    assert filt["INPUT"][1] == "-s 198.18.9.9/32 -j ACCEPT"  # foreign rule kept, below ours
    assert filt["FORWARD"][0].endswith("-j cali-FORWARD")
    assert filt["FORWARD"][-1].endswith("-j MARK --set-xmark 0x10000/0x10000")
    assert filt["FOREIGN"] == ["-j RETURN"]
    assert not table.dirty


def test_quiet_apply_does_nothing(fake: FakeIptables, table: IptablesTable) -> None:
    calls = len(fake.calls)
    table.update_chains(calico_filter_chains())  # same content again
    table.set_hooks(static.hooks(CFG, "filter"))
    table.apply()
    assert len(fake.calls) == calls


def test_only_changed_chains_are_rewritten(fake: FakeIptables, table: IptablesTable) -> None:
    table.update_chains(dispatch.workload_dispatch_chains(CFG, ["cali1"]))
    table.apply()
    text = fake.restores[-1]
    declared = [line for line in text.splitlines() if line.startswith(":")]
    assert declared == [
        ":cali-from-wl-dispatch - [0:0]",
        ":cali-fw-cali1 - [0:0]",  # stub for the not-yet-programmed endpoint chain
        ":cali-to-wl-dispatch - [0:0]",
        ":cali-tw-cali1 - [0:0]",
    ]
    assert "cali-INPUT" not in text and "-D " not in text
    assert fake.tables["filter"]["cali-fw-cali1"][-1].endswith("-j DROP")


def test_stub_is_replaced_then_chains_are_removed(fake: FakeIptables, table: IptablesTable) -> None:
    table.update_chains(dispatch.workload_dispatch_chains(CFG, ["cali1"]))
    real = Chain("cali-fw-cali1", (Rule(action=RETURN),))
    table.update_chains([real])
    table.apply()
    assert fake.tables["filter"]["cali-fw-cali1"] == [
        f'-m comment --comment "cali:{real.rule_hashes()[0]}" -j RETURN'
    ]
    table.update_chains(dispatch.workload_dispatch_chains(CFG, []))
    table.remove_chains(["cali-fw-cali1"])
    table.apply()
    assert "cali-fw-cali1" not in fake.tables["filter"]
    assert "cali-tw-cali1" not in fake.tables["filter"]  # the stub went too
    assert "-X cali-fw-cali1" in fake.restores[-1]


def test_previous_runs_leftovers_are_swept_foreign_state_kept(fake: FakeIptables) -> None:
    fake.tables["filter"]["cali-old"] = ['-m comment --comment "cali:oldoldoldoldoldo" -j DROP']
    fake.tables["filter"]["cali-old2"] = [
        '-m comment --comment "cali:old2old2old2old2" -j cali-old'
    ]
    fake.tables["filter"]["INPUT"].insert(
        0, '-m comment --comment "cali:stalehookstaleho" -j cali-old2'
    )
    table = IptablesTable("filter", 4, fake, backend="nft")
    table.update_chains(calico_filter_chains())
    table.set_hooks(static.hooks(CFG, "filter"))
    table.apply()
    filt = fake.tables["filter"]
    assert "cali-old" not in filt and "cali-old2" not in filt
    assert [hash_of(r) is not None for r in filt["INPUT"]] == [True, False]
    assert filt["FOREIGN"] == ["-j RETURN"]
    assert len(fake.restores) == 1


def test_stale_chain_still_used_by_a_foreign_rule_is_only_emptied(fake: FakeIptables) -> None:
    fake.tables["filter"]["cali-old"] = ['-m comment --comment "cali:oldoldoldoldoldo" -j DROP']
    fake.tables["filter"]["FOREIGN"].append("-j cali-old")
    table = IptablesTable("filter", 4, fake, backend="nft")
    table.apply()
    assert fake.tables["filter"]["cali-old"] == []
    table.full_resync()
    assert len(fake.restores) == 1  # already empty: nothing more to do


def test_hooks_pushed_down_by_a_foreign_insert_are_restored(
    fake: FakeIptables, table: IptablesTable
) -> None:
    fake.tables["filter"]["INPUT"].insert(0, "-p tcp -j ACCEPT")
    table.full_resync()
    inp = fake.tables["filter"]["INPUT"]
    assert inp[0].endswith("-j cali-INPUT")
    assert inp[1:] == ["-p tcp -j ACCEPT", "-s 198.18.9.9/32 -j ACCEPT"]
    assert "-D INPUT 2" in fake.restores[-1]
    assert "cali-INPUT - [0:0]" not in fake.restores[-1]  # chains untouched


def test_full_resync_repairs_only_drifted_chains(
    fake: FakeIptables, table: IptablesTable, caplog: pytest.LogCaptureFixture
) -> None:
    table.full_resync()
    assert table.drift_repaired == 0  # nothing drifted: nothing counted
    del fake.tables["filter"]["cali-OUTPUT"][1]
    fake.tables["filter"]["cali-INPUT"].append("-j ACCEPT")  # foreign rule inside our chain
    table.update_chains([Chain("cali-mine", (Rule(action=DROP),))])  # ours, not drift
    table.full_resync()
    declared = [ln for ln in fake.restores[-1].splitlines() if ln.startswith(":")]
    assert declared == [":cali-INPUT - [0:0]", ":cali-OUTPUT - [0:0]", ":cali-mine - [0:0]"]
    assert table.drift_repaired == 2
    assert "2 chain(s) changed outside Felix: cali-INPUT cali-OUTPUT" in caplog.text
    fresh = FakeIptables()
    other = IptablesTable("filter", 4, fresh, backend="nft")
    other.update_chains(calico_filter_chains())
    other.apply()
    assert fake.tables["filter"]["cali-INPUT"] == fresh.tables["filter"]["cali-INPUT"]


def test_failure_raises_logs_input_and_retries_from_a_fresh_read(
    fake: FakeIptables, table: IptablesTable, caplog: pytest.LogCaptureFixture
) -> None:
    table.update_chains([Chain("cali-new", (Rule(action=DROP),))])
    fake.fail_next = True
    with caplog.at_level(logging.ERROR), pytest.raises(CommandFailed):
        table.apply()
    assert table.dirty
    assert ":cali-new - [0:0]" in caplog.text and "line 2 failed" in caplog.text
    saves = sum(c[0].endswith("-save") for c in fake.calls)
    table.apply()
    assert sum(c[0].endswith("-save") for c in fake.calls) == saves + 1
    assert "cali-new" in fake.tables["filter"] and not table.dirty


def test_append_mode_keeps_foreign_rules_first(fake: FakeIptables) -> None:
    table = IptablesTable("filter", 4, fake, backend="nft", insert_mode="append")
    table.update_chains(calico_filter_chains())
    table.set_hooks(static.hooks(CFG, "filter"))
    table.apply()
    inp = fake.tables["filter"]["INPUT"]
    assert inp[0] == "-s 198.18.9.9/32 -j ACCEPT" and inp[1].endswith("-j cali-INPUT")
    table.full_resync()
    assert len(fake.restores) == 1


def test_removing_all_hooks_and_chains_leaves_only_foreign_state(
    fake: FakeIptables, table: IptablesTable
) -> None:
    table.set_hooks([])
    table.remove_chains(table.chain_names())
    table.apply()
    assert fake.tables["filter"] == {
        "INPUT": ["-s 198.18.9.9/32 -j ACCEPT"],
        "FORWARD": [],
        "OUTPUT": [],
        "FOREIGN": ["-j RETURN"],
    }


def test_ipv6_and_legacy_pick_their_tools() -> None:
    fake = FakeIptables()
    table = IptablesTable("raw", 6, fake, backend="legacy")
    table.set_hooks([Hook("PREROUTING", (Rule(ANY.protocol("udp"), Jump("cali-PREROUTING")),))])
    table.apply()
    assert {c[0] for c in fake.calls} == {"ip6tables-legacy-save", "ip6tables-legacy-restore"}
    assert fake.tables["raw"]["cali-PREROUTING"][0].endswith("-j DROP")  # stubbed target


def test_non_calico_chain_names_are_refused() -> None:
    with pytest.raises(ValueError):
        IptablesTable("filter", 4, FakeIptables()).update_chains([Chain("INPUT")])


def test_parse_save_reads_only_hashes_and_foreign_references() -> None:
    state = parse_save(
        "*filter\n:INPUT ACCEPT [0:0]\n:cali-x - [0:0]\n"
        '-A INPUT -i lo -m comment --comment "cali:abc_-123" -j cali-x\n'
        "-A INPUT -j cali-y\n-A cali-x -j cali-z\nCOMMIT\n"
    )
    assert state.chains == {"INPUT": ["abc_-123", None], "cali-x": [None]}
    assert state.foreign_refs == {"cali-y"}


class SaveOnly:
    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        if args[0] not in self.outputs:
            raise CommandFailed(args, -1, "", "command not found")
        return CommandResult(0, self.outputs[args[0]], "")


def test_detect_backend_prefers_calico_state_then_more_rules_then_nft() -> None:
    rules = "-A INPUT -j ACCEPT\n" * 3
    assert detect_backend(SaveOnly({})) == "nft"
    assert detect_backend(SaveOnly({"iptables-legacy-save": rules})) == "legacy"
    assert (
        detect_backend(
            SaveOnly({"iptables-legacy-save": rules, "ip6tables-nft-save": ":cali-INPUT - [0:0]\n"})
        )
        == "nft"
    )


def test_tables_needing_a_read_share_one_save_per_family(fake: FakeIptables) -> None:
    tables = [IptablesTable(t, 4, fake, backend="nft") for t in ("raw", "mangle", "filter")]
    for table in tables:
        table.update_chains(static.static_filter_chains(CFG, 4) if table.table == "filter" else [])
        table.set_hooks(static.hooks(CFG, table.table))
    apply_tables(tables)
    assert [c for c in fake.calls if c[0].endswith("-save")] == [["iptables-nft-save"]]
    fake.tables["filter"]["cali-INPUT"] = []  # tampering
    tables[2].resync()
    apply_tables(tables)  # one table to read: its own save
    assert fake.calls[-2] == ["iptables-nft-save", "-t", "filter"]
    assert fake.tables["filter"]["cali-INPUT"]
    for table in tables:
        table.resync()
    calls = len(fake.calls)
    apply_tables(tables)  # nothing drifted: one read, no write
    assert fake.calls[calls:] == [["iptables-nft-save"]]


def place_policies(tables: dict[str, IptablesTable], where: dict[str, str]) -> None:
    """Policy chain -> the table it is enforced in, jumped to from that table's own chain."""
    for name, table in tables.items():
        here = [p for p, t in where.items() if t == name]
        jumps = tuple(Rule(action=Jump(p)) for p in here)
        table.update_chains([Chain(f"cali-ep-{name}", jumps)])
        table.update_chains(Chain(p, (Rule(action=DROP),)) for p in here)
        table.remove_chains(p for p in where if p not in here)


def first_lines(texts: Sequence[str]) -> list[str]:
    return [t.split("\n", 1)[0] for t in texts]


@pytest.mark.parametrize("restarted", [False, True])
@pytest.mark.parametrize(
    ("src", "dst"), [("raw", "filter"), ("mangle", "filter"), ("filter", "raw")]
)
def test_a_policy_changing_table_is_written_where_it_arrives_first(
    src: str, dst: str, restarted: bool
) -> None:
    """A doNotTrack (raw) or preDNAT (mangle) policy made normal (filter), or back: each table
    is one restore, so had the table it leaves been written first, a Felix killed in between
    (or not yet come back to the other table) would leave it enforced nowhere. Also for a
    restarted Felix that finds the policy where the killed one had left it."""
    fake = FakeIptables()
    names = ("raw", "mangle", "filter")
    tables = {t: IptablesTable(t, 4, fake, backend="nft") for t in names}
    place_policies(tables, {"cali-pi-moving": src})
    apply_tables(list(tables.values()))
    written = len(fake.restores)
    if restarted:
        tables = {t: IptablesTable(t, 4, fake, backend="nft") for t in names}
    place_policies(tables, {"cali-pi-moving": dst})
    apply_tables(list(tables.values()))
    assert first_lines(fake.restores[written:]) == [f"*{dst}", f"*{src}"]
    assert fake.tables[dst]["cali-pi-moving"] and "cali-pi-moving" not in fake.tables[src]


def test_policies_moving_both_ways_keep_the_usual_order_and_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeIptables()
    tables = {t: IptablesTable(t, 4, fake, backend="nft") for t in ("raw", "filter")}
    place_policies(tables, {"cali-pi-a": "raw", "cali-pi-b": "filter"})
    apply_tables(list(tables.values()))
    written = len(fake.restores)
    place_policies(tables, {"cali-pi-a": "filter", "cali-pi-b": "raw"})
    with caplog.at_level(logging.WARNING):
        apply_tables(list(tables.values()))
    assert first_lines(fake.restores[written:]) == ["*raw", "*filter"]
    assert "chains move both ways between tables: ['raw', 'filter']" in caplog.text


# -- incremental planning: always the plan a from-scratch comparison would make ------------

POOL = [f"cali-c{n}" for n in range(6)]


def reference_plan(table: IptablesTable, kernel: KernelTable) -> TableUpdate:
    """The plan as computed before planning was incremental: every chain, every time."""
    expected = {name: (d.chain, d.hashes) for name, d in table._chains.items()}
    wanted: set[str] = set().union(*(d.targets for d in table._chains.values()))
    for hook in table._hooks.values():
        wanted |= Chain(hook.chain, (*hook.insert, *hook.append)).targets()
    for name in sorted(wanted - expected.keys()):
        if name.startswith("cali-"):
            stub = stub_chain(name)
            expected[name] = (stub, stub.rule_hashes())
    write = [(c, h) for n, (c, h) in sorted(expected.items()) if kernel.chains.get(n) != h]
    stale = sorted(n for n in kernel.chains if n.startswith("cali-") and n not in expected)
    kept = [n for n in stale if n in kernel.foreign_refs]
    hook_deletes, hooks = table._plan_hooks(kernel)
    return TableUpdate(
        table.table,
        write=write,
        flush=[n for n in stale if n not in kept or kernel.chains[n]],
        hook_deletes=hook_deletes,
        hooks=hooks,
        delete=[n for n in stale if n not in kept],
        insert_mode=table._insert_mode,
    )


def chain(name: str, targets: Sequence[str], variant: int) -> Chain:
    jumps = tuple(Rule(action=Jump(t)) for t in targets if t != name)
    return Chain(name, (Rule(ANY.in_iface(f"eth{variant}"), RETURN), *jumps))


OPS = st.one_of(
    st.tuples(
        st.just("update"), st.sampled_from(POOL), st.lists(st.sampled_from(POOL)), st.integers(0, 2)
    ),
    st.tuples(st.just("remove"), st.sampled_from(POOL)),
    st.tuples(st.just("hooks"), st.lists(st.sampled_from(POOL), max_size=2)),
    st.tuples(st.just("foreign"), st.sampled_from(POOL)),
    st.tuples(st.just("tamper"), st.sampled_from(POOL)),
    st.tuples(st.just("apply")),
)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(OPS, max_size=30))
def test_incremental_plan_equals_a_from_scratch_plan(ops: list[tuple[object, ...]]) -> None:
    fake = FakeIptables()
    fake.tables["filter"] = {"INPUT": [], "FORWARD": [], "OUTPUT": [], "FOREIGN": []}
    table = IptablesTable("filter", 4, fake, backend="nft")
    for op in [*ops, ("apply",)]:
        match op:
            case ("update", str(name), list(targets), int(variant)):
                table.update_chains([chain(name, targets, variant)])
            case ("remove", str(name)):
                table.remove_chains([name])
            case ("hooks", list(targets)):
                table.set_hooks([Hook("INPUT", tuple(Rule(action=Jump(t)) for t in targets))])
            case ("foreign", str(name)) if name in fake.table("filter"):
                fake.tables["filter"]["FOREIGN"].append(f"-j {name}")
                table.resync()
            case ("tamper", str(name)) if fake.table("filter").get(name):
                fake.tables["filter"][name].pop()
                table.resync()
            case ("apply",):
                if table._kernel is not None:
                    incremental = table._plan(table._kernel, table._changed)
                    assert incremental == reference_plan(table, table._kernel)
                table.apply()
                assert table._kernel == parse_save(fake.save("filter"))
                assert reference_plan(table, table._kernel).is_empty()


class OverlapCounter:
    """A runner for empty tables whose restores take a while, counting how many ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = self.most = 0

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        if args[0].endswith("-save"):
            return CommandResult(0, "", "")
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.2)
        with self.lock:
            self.running -= 1
        return CommandResult(0, "", "")


def test_families_are_written_side_by_side_only_when_large() -> None:
    runner = OverlapCounter()
    tables = [IptablesTable("filter", v, runner, backend="nft") for v in (4, 6)]
    for table in tables:
        table.update_chains(static.static_filter_chains(CFG, table.ip_version))
    apply_tables(tables)  # both read first (a start): side by side
    assert runner.most == 2
    runner.most = 0
    for table in tables:
        table.update_chains([Chain("cali-small", (Rule(action=DROP),))])
    apply_tables(tables)  # one chain each: one family after the other
    assert runner.most == 1
    runner.most = 0
    for table in tables:
        table.update_chains(Chain(f"cali-many-{n}") for n in range(SIDE_BY_SIDE_CHANGES))
    apply_tables(tables)
    assert runner.most == 2
