"""Felix's Prometheus metrics (a subset of Calico's names), on their own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


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
        self.calc_updates = Counter(
            "felix_calc_graph_updates_processed", "Datastore updates processed.", registry=r
        )
        self.apply_time = Histogram(
            "felix_int_dataplane_apply_time_seconds", "Time to apply dataplane updates.", registry=r
        )
        self.apply_failures = Counter(
            "felix_int_dataplane_failures", "Dataplane apply failures.", registry=r
        )
        self.messages = Counter(
            "felix_int_dataplane_messages", "Messages from the calculation graph.", registry=r
        )
        self.resyncs = Counter("felix_resyncs_started", "Datastore resyncs started.", registry=r)
        self.resync_state = Gauge(
            "felix_resync_state", "Datastore sync state (1 wait, 2 resync, 3 in sync).", registry=r
        )

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host or "0.0.0.0", registry=self.registry)
