"""Runs bench/datapath.py at a tiny scale so it cannot rot (no throughput assertions), and
checks what its per-packet figures rest on: the packet walker and the kernel's counters agree
on the chains both see, and an established packet skips policy whatever is active."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from .conftest import require_lab_tools


def test_datapath_bench_runs_at_tiny_scale(bench_script: Callable[[str], ModuleType]) -> None:
    require_lab_tools()
    bench = bench_script("datapath")
    result = bench.run(policies=10, reps=1, seconds=1.0, pings=10, count=200)
    assert len(result.a) == len(result.b) == 1
    assert all(s.tcp_gbps > 0 and s.udp_pps > 0 and s.ping_p50_us > 0 for s in result.a + result.b)
    a, b = result.cost["A"], result.cost["B"]
    for host in bench.HOSTS:
        for cost in (a, b):
            kernel = cost.counted[host, "new"]
            assert kernel.forwarded >= 200
            assert abs(cost.walked[host, "udp"][0] - kernel.total(bench.FORWARD_PATH)) < 0.5
        assert b.walked[host, "udp"][0] > a.walked[host, "udp"][0]
        established = [c.counted[host, "established"].per_chain for c in (a, b)]
        assert abs(established[0]["filter", "FORWARD"] - established[1]["filter", "FORWARD"]) < 0.5
    table = bench.format_result(result).splitlines()
    assert table[1].startswith("TCP Gbit/s") and table[4].startswith("ping p50 us")


def test_datapath_bench_counts_rule_evaluations(bench_script: Callable[[str], ModuleType]) -> None:
    """A kernel chain whose hook jumps to a chain that accepts part of the packets and
    returns the rest: every packet still in a chain is evaluated by its next rule."""
    bench = bench_script("datapath")
    saved = bench.parse_save(
        "*filter\n"
        ":FORWARD ACCEPT [0:0]\n"
        ":cali-x - [0:0]\n"
        ":cali-y - [0:0]\n"
        '[10:0] -A FORWARD -m comment --comment "cali:a" -j cali-x\n'
        '[4:0] -A FORWARD -m comment --comment "cali:b" -m mark --mark 0x1 -j ACCEPT\n'
        '[10:0] -A cali-x -m comment --comment "cali:c" -j MARK --set-xmark 0x0/0x1\n'
        '[3:0] -A cali-x -p tcp -m comment --comment "cali:d" -j ACCEPT\n'
        '[7:0] -A cali-x -m comment --comment "cali:e" -g cali-y\n'
        '[2:0] -A cali-y -p udp -m comment --comment "cali:f" -j DROP\n'
        "COMMIT\n"
    )
    # FORWARD: 10 + 5 returned (10 - 3 - 2); cali-x: 10 + 10 + 7; cali-y: 7.
    assert bench.evaluations(saved["filter"], "FORWARD") == (10, 10 + 5 + 10 + 10 + 7 + 7)
