"""Benchmark: optimised LabelIndex versus the naive all-pairs LinearScanLabelIndex.

Run with ``.venv/bin/python bench/label_index.py [--items N --selectors M]``.  Both indexes
see the same synthetic, Calico-shaped workload (endpoints labelled with namespace, app, tier,
env, version; policy-like selectors over them, a few of which cannot use the index) and are
measured in the same run.  Times are per operation; "ratio" is optimised / baseline median.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from calico.selector import LabelIndex, LinearScanLabelIndex, Selector, parse

Index = LabelIndex[int, int] | LinearScanLabelIndex[int, int]
NS_KEY = "projectcalico.org/namespace"
TIERS = ["frontend", "backend", "db", "cache", "batch"]
ENVS = ["prod", "staging", "dev"]
VERSIONS = ["v1", "v2", "v3", "v4", "v5"]


class Workload:
    """Deterministic generator of item labels and selectors."""

    def __init__(self, seed: int, n_apps: int = 300, n_namespaces: int = 50) -> None:
        self.rng = random.Random(seed)
        self.apps = [f"app{i}" for i in range(n_apps)]
        self.namespaces = [f"ns{i}" for i in range(n_namespaces)]

    def labels(self) -> dict[str, str]:
        r = self.rng
        labels = {
            NS_KEY: r.choice(self.namespaces),
            "app": r.choice(self.apps),
            "tier": r.choice(TIERS),
            "env": r.choice(ENVS),
            "version": r.choice(VERSIONS),
        }
        if r.random() < 0.1:
            labels["canary"] = "true"
        return labels

    def selector(self) -> Selector:
        r = self.rng
        app, app2, app3 = (r.choice(self.apps) for _ in range(3))
        ns, tier, env = r.choice(self.namespaces), r.choice(TIERS), r.choice(ENVS)
        ver = r.choice(VERSIONS)
        choices: list[tuple[float, str]] = [
            (0.35, f'app == "{app}"'),
            (0.15, f'{NS_KEY} == "{ns}" && tier == "{tier}"'),
            (0.10, f'app in {{"{app}", "{app2}", "{app3}"}} && env != "dev"'),
            (0.10, f'has(canary) && app == "{app}"'),
            (0.08, f'tier == "{tier}" && env == "{env}" && version in {{"{ver}", "v9"}}'),
            (0.10, f'(app == "{app}" || app == "{app2}") && !has(canary)'),
            (0.05, f'{NS_KEY} == "{ns}"'),
            (0.05, f'app starts with "{app[:4]}" && env == "{env}" && tier == "{tier}"'),
            (0.02, f'env != "dev" && version not in {{"{ver}"}}'),  # unindexed
        ]
        weights = [w for w, _ in choices]
        return parse(r.choices([text for _, text in choices], weights)[0])


def percentile(samples: Sequence[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def make_index(kind: str, counter: list[int]) -> Index:
    def started(sel_id: int, item_id: int) -> None:
        counter[0] += 1

    def stopped(sel_id: int, item_id: int) -> None:
        counter[0] -= 1

    if kind == "optimised":
        return LabelIndex(started, stopped)
    return LinearScanLabelIndex(started, stopped)


def time_load(
    kind: str, items: list[dict[str, str]], sels: list[Selector], repeats: int
) -> tuple[list[float], Index, int]:
    samples: list[float] = []
    index: Index | None = None
    counter = [0]
    for _ in range(repeats):
        counter = [0]
        index = make_index(kind, counter)
        start = time.perf_counter()
        for item_id, labels in enumerate(items):
            index.update_labels(item_id, labels)
        for sel_id, sel in enumerate(sels):
            index.update_selector(sel_id, sel)
        samples.append(time.perf_counter() - start)
    assert index is not None
    return samples, index, counter[0]


def time_ops(index: Index, ops: Sequence[Callable[[Index], None]]) -> list[float]:
    samples = []
    for op in ops:
        start = time.perf_counter()
        op(index)
        samples.append(time.perf_counter() - start)
    return samples


def make_update_ops(
    wl: Workload, n_items: int, n_sels: int, count: int
) -> dict[str, list[Callable[[Index], None]]]:
    def label_op(item_id: int, labels: dict[str, str]) -> Callable[[Index], None]:
        return lambda idx: idx.update_labels(item_id, labels)

    def sel_op(sel_id: int, sel: Selector) -> Callable[[Index], None]:
        return lambda idx: idx.update_selector(sel_id, sel)

    rng = wl.rng
    return {
        "item label update": [label_op(rng.randrange(n_items), wl.labels()) for _ in range(count)],
        "selector update": [sel_op(rng.randrange(n_sels), wl.selector()) for _ in range(count)],
    }


def fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:8.2f} s "
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds * 1e6:8.1f} us"


def run(n_items: int, n_sels: int, load_repeats: int, updates: int, seed: int) -> list[str]:
    """Run every measurement; returns the printed table rows."""
    wl = Workload(seed)
    items = [wl.labels() for _ in range(n_items)]
    sels = [wl.selector() for _ in range(n_sels)]
    results: dict[str, dict[str, list[float]]] = {}
    final: dict[str, Index] = {}
    for kind in ("optimised", "baseline"):
        samples, index, matches = time_load(kind, items, sels, load_repeats)
        results.setdefault("load all items + selectors", {})[kind] = samples
        final[kind] = index
        results.setdefault("_matches", {})[kind] = [float(matches)]
    ops = make_update_ops(wl, n_items, n_sels, updates)
    for name, op_list in ops.items():
        for kind in ("optimised", "baseline"):
            results.setdefault(name, {})[kind] = time_ops(final[kind], op_list)
    for sel_id in range(n_sels):  # both indexes saw the same operations
        assert final["optimised"].matches_for_selector(sel_id) == final[
            "baseline"
        ].matches_for_selector(sel_id)
    return render(results, n_items, n_sels)


def render(results: dict[str, dict[str, list[float]]], n_items: int, n_sels: int) -> list[str]:
    matches = int(results.pop("_matches")["optimised"][0])
    rows = [
        f"{n_items} items x {n_sels} selectors, {matches} matching pairs after load",
        f"{'operation':28} {'n':>5} {'opt median':>11} {'opt p99':>11} "
        f"{'base median':>11} {'base p99':>11} {'ratio':>8}",
    ]
    for name, by_kind in results.items():
        opt, base = by_kind["optimised"], by_kind["baseline"]
        ratio = statistics.median(opt) / statistics.median(base)
        rows.append(
            f"{name:28} {len(opt):>5} {fmt(statistics.median(opt)):>11} "
            f"{fmt(percentile(opt, 99)):>11} {fmt(statistics.median(base)):>11} "
            f"{fmt(percentile(base, 99)):>11} {ratio:>8.4f}"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--selectors", type=int, default=1_000)
    parser.add_argument("--load-repeats", type=int, default=7)
    parser.add_argument("--updates", type=int, default=500, help="single updates per kind")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    for row in run(args.items, args.selectors, args.load_repeats, args.updates, args.seed):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
