"""Kernel tool calls and failures are counted under Calico's names; other programs are not."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from calico.felix.metrics import FelixMetrics, MeteredRunner
from calico.programs import CommandFailed, CommandResult


class Runner:
    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        if args[0] == "ipset" and args[1] == "bad":
            raise CommandFailed(args, 1, "", "no")
        return CommandResult(2 if args[0] == "ip6tables-legacy-restore" else 0, "", "")


def value(metrics: FelixMetrics, name: str) -> float:
    got = metrics.registry.get_sample_value(name)
    assert got is not None, name
    return got


def test_calls_and_errors_per_tool() -> None:
    metrics = FelixMetrics()
    runner = MeteredRunner(Runner(), metrics)
    runner.run(["iptables-nft-restore", "--noflush"])
    runner.run(["ip6tables-legacy-restore"], check=False)  # exit 2, not raised: still an error
    runner.run(["/usr/sbin/iptables-nft-save", "-t", "filter"])
    runner.run(["ipset", "restore"])
    with pytest.raises(CommandFailed):
        runner.run(["ipset", "bad"])
    runner.run(["ip", "link"])  # not a tool Calico counts
    assert value(metrics, "felix_iptables_restore_calls") == 2
    assert value(metrics, "felix_iptables_restore_errors") == 1
    assert value(metrics, "felix_iptables_save_calls") == 1
    assert value(metrics, "felix_iptables_save_errors") == 0
    assert value(metrics, "felix_ipset_calls") == 2
    assert value(metrics, "felix_ipset_errors") == 1
