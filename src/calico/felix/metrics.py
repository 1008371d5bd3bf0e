"""Felix's Prometheus metrics, on their own registry, under Calico's names where the meaning
matches (docs/metrics.md lists them; dashboards written for Calico work unchanged).

Calico's counters are exposed without a `_total` suffix (Go's client adds none) while
prometheus_client's Counter always adds one, so a counter with a Calico name is a Gauge that
only ever goes up: the exposed name is Calico's, and `rate()` works on it all the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from calico.dataplane.drivers.deny_counters import DenyCounts
from calico.programs import CommandResult, CommandRunner, name_of

CLUSTER_KINDS = ("hosts", "workload_endpoints", "host_endpoints", "policies", "profiles", "tiers")
"""The cluster-wide `felix_cluster_num_<kind>` gauges; `_GraphAdapter` keeps them current."""


def _calico_counter(name: str, doc: str, registry: CollectorRegistry) -> Gauge:
    return Gauge(name, doc, registry=registry)


class FelixMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.active_local_endpoints = Gauge(
            "felix_active_local_endpoints", "Local endpoints Felix is programming.", registry=r
        )
        self.active_local_policies = Gauge(
            "felix_active_local_policies", "Policies selecting a local endpoint.", registry=r
        )
        self.ipsets_calico = Gauge("felix_ipsets_calico", "Calico IP sets programmed.", registry=r)
        self.calc_updates = _calico_counter(
            "felix_calc_graph_updates_processed", "Datastore updates processed.", r
        )
        self.apply_time = Histogram(
            "felix_int_dataplane_apply_time_seconds", "Time to apply dataplane updates.", registry=r
        )
        self.apply_failures = _calico_counter(
            "felix_int_dataplane_failures", "Dataplane apply failures.", r
        )
        self.resyncs = _calico_counter("felix_resyncs_started", "Datastore resyncs started.", r)
        self.resync_state = Gauge(
            "felix_resync_state", "Datastore sync state (1 wait, 2 resync, 3 in sync).", registry=r
        )
        self.cluster = {
            kind: Gauge(
                f"felix_cluster_num_{kind}",
                f"Cluster-wide number of {kind.replace('_', ' ')}.",
                registry=r,
            )
            for kind in CLUSTER_KINDS
        }
        self.drift_repaired = Gauge(
            "felix_int_dataplane_drift_repaired",
            "Kernel objects a periodic refresh found changed behind Felix's back and repaired "
            "(kind: iptables chains, ipsets).",
            ["kind"],
            registry=r,
        )
        self.program_calls = {
            tool: (
                _calico_counter(f"felix_{tool}_calls", f"{tool} invocations.", r),
                _calico_counter(f"felix_{tool}_errors", f"{tool} invocations that failed.", r),
            )
            for tool in ("iptables_restore", "iptables_save", "ipset")
        }

    def count_call(self, program: str, ok: bool) -> None:
        """One run of a kernel-programming tool (others are not counted)."""
        tool = _tool_of(program)
        if tool is None:
            return
        calls, errors = self.program_calls[tool]
        calls.inc()
        if not ok:
            errors.inc()

    def watch_denies(self, read: Callable[[], DenyCounts]) -> None:
        """Per-policy deny counters, read from the kernel's rule counters at each scrape."""
        self.registry.register(_DenyCollector(read))

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host or "0.0.0.0", registry=self.registry)


def _tool_of(program: str) -> str | None:
    name = name_of(program)
    if name == "ipset":
        return "ipset"
    if "tables" in name and name.endswith("-restore"):
        return "iptables_restore"
    if "tables" in name and name.endswith("-save"):
        return "iptables_save"
    return None


class MeteredRunner:
    """A CommandRunner that counts each kernel tool's calls and failures."""

    def __init__(self, runner: CommandRunner, metrics: FelixMetrics) -> None:
        self._runner = runner
        self._metrics = metrics

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        try:
            result = self._runner.run(args, stdin=stdin, check=check)
        except Exception:
            self._metrics.count_call(args[0], ok=False)
            raise
        self._metrics.count_call(args[0], ok=result.returncode == 0)
        return result


class _DenyCollector(Collector):
    def __init__(self, read: Callable[[], DenyCounts]) -> None:
        self._read = read

    def describe(self) -> Iterable[CounterMetricFamily]:
        return [_deny_family("packets", {}), _deny_family("bytes", {})]

    def collect(self) -> Iterator[CounterMetricFamily]:
        counts = self._read()
        yield _deny_family("packets", {k: v[0] for k, v in counts.items()})
        yield _deny_family("bytes", {k: v[1] for k, v in counts.items()})


def _deny_family(unit: str, values: Mapping[tuple[str, str, str], int]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        f"felix_denied_{unit}",
        f"{unit.title()} denied by a rule Felix rendered, from the kernel's rule counters. "
        "kind: policy, profile, end-of-tier (no policy in the tier passed it) or no-profile.",
        labels=["kind", "name", "direction"],
    )
    for (kind, name, direction), value in sorted(values.items()):
        family.add_metric([kind, name, direction], value)
    return family
