"""A Felix host for churn runs (tests/fv/test_churn.py and bench/churn.py): a baseline of
real workloads and policies that stays, then churn on top (calico.testing.churn)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from calico.testing.churn import Churner, KernelState, proc_rss, snapshot

from .conftest import Cluster, FelixHost

BASELINE_ENDPOINTS = 4


@dataclass(frozen=True, slots=True)
class Settled:
    state: KernelState
    leftovers: dict[str, int]
    seconds: float  # until no leftovers (or the timeout)
    rss: int


def baseline(
    cluster: Cluster, node: str = "churn-host", **env: str
) -> tuple[FelixHost, KernelState]:
    """Felix (default settings, plus `env`) with baseline workloads carrying the labels
    churned policies select, and one policy of its own; returns the host and its kernel
    state once in sync."""
    host = cluster.host(node, fast=False, **env)
    for i in range(BASELINE_ENDPOINTS):
        wl = host.add_workload(f"calib{i}", f"198.18.1.{i + 1}", f"2001:db8:1::{i + 1}")
        cluster.add_endpoint(host, wl, f"base{i}", ns="churn", slot=str(i % 4), base="yes")
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "base"},
        "spec": {"selector": "base == 'yes'", "ingress": [
            {"action": "Allow", "source": {"selector": "base == 'yes'"}}]},
    })  # fmt: skip
    host.start()
    host.wait_ready(timeout=60)
    settled = settle(host, None, timeout=30, quiet=5.0)
    return host, settled.state


def settle(host: FelixHost, baseline: KernelState | None, timeout: float, quiet: float) -> Settled:
    """Waits until nothing is left over against `baseline` (if given) and the kernel state is
    unchanged for `quiet` seconds, at most `timeout`; then reads Felix's RSS."""
    assert host.proc is not None
    started = time.monotonic()
    last, stable_since = snapshot(host.ns, host.netns), time.monotonic()
    while time.monotonic() - started < timeout:
        if host.proc.poll() is not None:
            raise AssertionError(f"felix exited {host.proc.returncode}:\n{host.log_tail()}")
        time.sleep(1.0)
        now = snapshot(host.ns, host.netns)
        if now != last:
            last, stable_since = now, time.monotonic()
        clean = baseline is None or not any(now.leftovers(baseline).values())
        if clean and time.monotonic() - stable_since >= quiet:
            break
    left = last.leftovers(baseline) if baseline is not None else {}
    return Settled(last, left, time.monotonic() - started, proc_rss(host.proc.pid))


def churner(
    cluster: Cluster, host: FelixHost, endpoints: int, policies: int, **options: Any
) -> Churner:
    """A Churner on `host` (`options`: Churner's keyword options)."""
    return Churner(
        cluster.ns, host.netns, host.node, cluster.client, endpoints, policies, **options
    )
