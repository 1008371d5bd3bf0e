"""calico-felix: wiring of syncer -> calculation graph -> dataplane, plus status and health.

Start-up, as Calico's Felix: load local config (environment, config file), connect to etcd,
wait until the datastore is initialised (ClusterInformation datastoreReady), layer in the
datastore's FelixConfiguration, then start the dataplane thread, the calc thread (the pure
calculation graph, fed by the resource syncer and the IPAM block syncer: `calc_feed`) and
the status reporter. The main thread supervises: if any loop dies Felix exits non-zero (its
restart resyncs), and if the FelixConfiguration changes Felix re-executes itself with the
new configuration, keeping its PID.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from calico import programs
from calico.calc.graph import CalcGraph
from calico.calc.messages import HostEndpointID, WorkloadEndpointID
from calico.calc.messages import WorkloadEndpoint as WorkloadEndpointMessage
from calico.calc.salvage import salvage_policy
from calico.dataplane.drivers.links import SysctlFiles
from calico.dataplane.kernel import nft_generation, open_netlink
from calico.dataplane.loop import ApplyStats, DataplaneSettings, InternalDataplane
from calico.dataplane.managers.vxlan import VXLANSettings
from calico.datastore.api import Backend, DatastoreError, DatastoreTlsError, SyncStatus
from calico.datastore.client import ResourceClient, ResourceNotFound
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.datastore.resource_syncer import ResourceUpdate, resource_syncer
from calico.datastore.syncer import Syncer
from calico.felix.calc_feed import Block, CalcFeed
from calico.felix.config import FelixConfig, build_config, file_layer
from calico.felix.health import HealthAggregator, serve_health
from calico.felix.metrics import CLUSTER_KINDS, FelixMetrics, MeteredRunner
from calico.felix.settings import datastore_specs, rules_config
from calico.felix.status import StatusReporter
from calico.ipam.keys import blocks_prefix
from calico.model.base import Resource
from calico.model.endpoints import HostEndpoint, WorkloadEndpoint
from calico.model.felixconfig import FelixConfiguration
from calico.model.keys import ResourceKey
from calico.model.network import ClusterInformation, IPPool, Node
from calico.model.policy import (
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    NetworkPolicy,
    NetworkSet,
    Profile,
    Tier,
)
from calico.model.status_keys import host_endpoint_status_key, workload_status_key

log = logging.getLogger("calico.felix")

WATCHED_KINDS: tuple[type[Resource], ...] = (
    WorkloadEndpoint,
    HostEndpoint,
    Profile,
    NetworkPolicy,
    GlobalNetworkPolicy,
    Tier,
    NetworkSet,
    GlobalNetworkSet,
    FelixConfiguration,
    ClusterInformation,
    IPPool,
    Node,
)
_CLUSTER_KIND: dict[type[Resource], str] = {
    Node: "hosts",
    WorkloadEndpoint: "workload_endpoints",
    HostEndpoint: "host_endpoints",
    NetworkPolicy: "policies",
    GlobalNetworkPolicy: "policies",
    Profile: "profiles",
    Tier: "tiers",
}
"""Felix's `felix_cluster_num_*` gauges: what each counts."""
_RESTART = 129  # internal: re-exec with new config
GC_YOUNG_THRESHOLD = 50_000
# s: the calc graph flushes at most this often under a stream of changes (calc_feed's doc):
# at 150 changes/s one flush per watch event was 31 % of the calc thread's Python samples
# and woke the dataplane thread as often; Felix's own CPU 14.9 -> 14.1 % of a core, two
# alternated pairs of bench/churn_rate.py runs.
CALC_FLUSH_INTERVAL = 0.05
_LOG_LEVELS = {
    "Trace": logging.DEBUG,
    "Debug": logging.DEBUG,
    "Info": logging.INFO,
    "Warning": logging.WARNING,
    "Error": logging.ERROR,
    "Fatal": logging.CRITICAL,
}


def dataplane_settings(cfg: FelixConfig) -> DataplaneSettings:
    return DataplaneSettings(
        rules=rules_config(cfg),
        iptables_backend=cfg.iptables_backend.lower(),
        iptables_refresh=cfg.iptables_refresh_interval,
        ipsets_refresh=cfg.ipsets_refresh_interval,
        route_refresh=cfg.route_refresh_interval,
        interface_refresh=cfg.interface_refresh_interval,
        remove_external_routes=cfg.remove_external_routes,
        hostname=cfg.hostname,
        vxlan=VXLANSettings(
            enabled=cfg.vxlan_enabled,
            vni=cfg.vxlan_vni,
            mtu=cfg.vxlan_mtu,
            mtu_v6=cfg.vxlan_mtu_v6,
            mtu_file=cfg.mtu_file,
        ),
    )


def wait_for_datastore(client: ResourceClient, stop: threading.Event) -> None:
    """Block until ClusterInformation says the datastore is ready (as Calico's Felix)."""
    last_log = 0.0
    while not stop.is_set():
        reason = "no ClusterInformation yet"
        try:
            info = client.get(ClusterInformation, "default")
            if info.spec.datastoreReady:
                return
            reason = "datastoreReady is false"
        except ResourceNotFound:
            pass
        except DatastoreTlsError:
            raise  # a configuration error: waiting does not fix it
        except DatastoreError as exc:
            reason = str(exc)
        if time.monotonic() - last_log > 10:
            log.info("waiting for the datastore to be ready: %s", reason)
            last_log = time.monotonic()
        stop.wait(1.0)


def calc_syncers(backend: Backend, feed: CalcFeed) -> list[Syncer]:
    """The syncers feeding the calc thread: the resources Felix watches, the IPAM blocks."""
    return [
        resource_syncer(
            backend,
            WATCHED_KINDS,
            feed.resource_source(),
            name="felix-syncer",
            salvage=salvage_policy,  # broken policies fail closed
        ),
        Syncer(backend, [blocks_prefix()], feed.block_source(), name="felix-blocks"),
    ]


class Felix:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = dict(environ)
        self.stop_event = threading.Event()
        self.exit_code = 0
        self.local_file = file_layer(self.environ.get("FELIX_CONFIGFILE"))
        self.config = build_config(self.environ, self.local_file)
        etcd = EtcdConfig.from_env(self.environ).for_host(self.config.hostname)
        self.backend: Backend = EtcdBackend(etcd)
        self.client = ResourceClient(self.backend)
        self.health = HealthAggregator()
        self.metrics = FelixMetrics()
        self._datastore_specs: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
        self._status_swept = False

    def load_datastore_config(self) -> None:
        """Layer the datastore's FelixConfiguration over the local configuration."""
        self._datastore_specs = datastore_specs(self.client, self.config.hostname)
        self.config = build_config(self.environ, self.local_file, *self._datastore_specs)

    def calc_pipeline(self, dataplane: InternalDataplane) -> tuple[CalcFeed, list[Syncer]]:
        """The calc thread and its syncers, feeding `dataplane` (not started)."""
        cfg = self.config
        graph = CalcGraph(cfg.hostname, dataplane.send, cfg.floating_ips == "Enabled")
        adapter = _GraphAdapter(graph, self.metrics, self.health, self.on_config_update)
        feed = CalcFeed(adapter, flush_interval=CALC_FLUSH_INTERVAL)
        return feed, calc_syncers(self.backend, feed)

    def run(self) -> int:
        wait_for_datastore(self.client, self.stop_event)
        if self.stop_event.is_set():
            return self.exit_code
        self.load_datastore_config()
        cfg = self.config
        logging.getLogger("calico").setLevel(
            cfg.log_severity.upper().replace("FATAL", "CRITICAL").replace("TRACE", "DEBUG")
        )
        log.info(
            "Felix starting on host %s (interfaces %s)",
            cfg.hostname,
            ",".join(cfg.interface_prefixes),
        )
        os.makedirs(cfg.run_dir, exist_ok=True)
        self._start_endpoints()
        reporter = StatusReporter(
            self.backend,
            cfg.hostname,
            cfg.reporting_interval,
            cfg.reporting_ttl,
            region=cfg.region_string,
            endpoint_delay=cfg.endpoint_reporting_delay,
        )
        reporter.set_rules_settings(rules_config(cfg).to_json())
        try:  # before the first apply, so a trace never pairs these rules with a last run's
            reporter.flush_endpoints()
        except DatastoreError as exc:
            log.warning("rules settings not reported yet (will retry): %s", exc)
        self.reporter = reporter
        dataplane = self._build_dataplane()
        feed, syncers = self.calc_pipeline(dataplane)
        dataplane.start()
        feed.start()
        for syncer in syncers:
            syncer.start()
        reporter.start()
        try:
            self._supervise(dataplane, feed, syncers)
        finally:
            feed.stop()  # first: a syncer blocked on a full queue is let go
            for syncer in syncers:
                syncer.stop()
            dataplane.stop()
            reporter.stop()
            self.backend.close()
        return self.exit_code

    def register_health(self) -> None:
        self.health.register("FelixStartup", live_timeout=None, reports_ready=False)
        self.health.register("CalculationGraph", live_timeout=None, reports_ready=True)
        self.health.register("InternalDataplaneMainLoop", live_timeout=90, reports_ready=True)

    def _start_endpoints(self) -> None:
        cfg = self.config
        self.register_health()
        if cfg.health_enabled:
            serve_health(self.health, cfg.health_host, cfg.health_port)
        if cfg.prometheus_enabled:
            self.metrics.serve(cfg.prometheus_host, cfg.prometheus_port)

    def _build_dataplane(self) -> InternalDataplane:
        cfg = self.config
        dataplane = InternalDataplane(
            dataplane_settings(cfg),
            MeteredRunner(programs.Runner(), self.metrics),
            functools.partial(open_netlink, None),
            on_endpoint_status=self._endpoint_status if cfg.endpoint_reporting_enabled else None,
            on_health=self._dataplane_health,
            on_applied=self._record_apply,
            nft_generation=nft_generation(),
            on_host_endpoints=self.reporter.set_host_endpoint_interfaces,
            sysctls=SysctlFiles(),
        )
        self.metrics.watch_denies(dataplane.deny_counters)
        return dataplane

    def _dataplane_health(self, ready: bool) -> None:
        self.health.report("InternalDataplaneMainLoop", ready=ready)
        if ready and not self._status_swept and self.config.endpoint_reporting_enabled:
            self._status_swept = True  # every endpoint's status is queued by now
            self.reporter.endpoints_resynced()

    def _record_apply(self, stats: ApplyStats) -> None:
        m = self.metrics
        m.apply_time.observe(stats.seconds)
        if not stats.ok:
            m.apply_failures.inc()
        m.active_local_endpoints.set(stats.endpoints)
        m.active_local_policies.set(stats.policies)
        m.ipsets_calico.set(stats.ipsets)
        for kind, repaired in stats.drift_repaired.items():
            m.drift_repaired.labels(kind).set(repaired)

    def _endpoint_status(
        self,
        ep_id: WorkloadEndpointID | HostEndpointID,
        ep: WorkloadEndpointMessage | None,
        status: str | None,
    ) -> None:
        host = self.config.hostname
        region = self.config.region_string
        if isinstance(ep_id, HostEndpointID):
            key = host_endpoint_status_key(host, ep_id.name, region)
        else:
            orchestrator = (ep.orchestrator if ep else "") or "unknown"
            # Calico's workload ID: "<namespace>/<workload>" (pod names repeat across
            # namespaces; without the namespace their status keys would collide).
            workload = f"{ep_id.namespace}/{(ep.workload if ep else '') or ep_id.name}"
            key = workload_status_key(
                host, orchestrator, workload, (ep.endpoint if ep else "") or "eth0", region
            )
        self.reporter.set_endpoint_status(key, status)

    def on_config_update(self, key: ResourceKey, resource: Resource | None) -> None:
        """FelixConfiguration changes after start: restart with the new config, as Calico."""
        if key.name not in ("default", f"node.{self.config.hostname}"):
            return
        spec = resource.spec_values() if isinstance(resource, FelixConfiguration) else {}
        specs = (
            (spec, self._datastore_specs[1])
            if key.name == "default"
            else (self._datastore_specs[0], spec)
        )
        if build_config(self.environ, self.local_file, *specs) != self.config:
            log.warning("Felix configuration changed in the datastore; restarting to apply it")
            self.exit_code = _RESTART
            self.stop_event.set()

    def _supervise(
        self, dataplane: InternalDataplane, feed: CalcFeed, syncers: Sequence[Syncer]
    ) -> None:
        self.health.report("FelixStartup", ready=True)
        loops: list[CalcFeed | Syncer] = [feed, *syncers]
        while not self.stop_event.wait(1.0):
            if not dataplane.is_alive():
                log.error("dataplane thread died: %s", dataplane.failure)
                self.exit_code = 1
                return
            for loop in loops:
                if not loop.is_alive():
                    log.error("%s died: %s", loop.name, loop.failure)
                    self.exit_code = 1
                    return


class _GraphAdapter:
    """The calc thread's work -> Felix's configuration and the calculation graph.
    FelixConfiguration is Felix's own business, not the graph's."""

    def __init__(
        self,
        graph: CalcGraph,
        metrics: FelixMetrics,
        health: HealthAggregator,
        on_config_update: Callable[[ResourceKey, Resource | None], None],
    ) -> None:
        self._graph = graph
        self._metrics = metrics
        self._health = health
        self._on_config_update = on_config_update
        self._cluster: dict[str, set[ResourceKey]] = {kind: set() for kind in CLUSTER_KINDS}

    def on_status(self, status: SyncStatus) -> None:
        metrics = self._metrics
        metrics.resync_state.set(
            {SyncStatus.WAIT_FOR_READY: 1, SyncStatus.RESYNC: 2, SyncStatus.IN_SYNC: 3}[status]
        )
        if status is SyncStatus.RESYNC:
            metrics.resyncs.inc()
        self._health.report("CalculationGraph", ready=status is SyncStatus.IN_SYNC)
        self._graph.on_status(status)

    def on_resource_updates(self, updates: Sequence[ResourceUpdate]) -> None:
        self._metrics.calc_updates.inc(len(updates))
        for u in updates:
            if u.key.kind is FelixConfiguration:
                self._on_config_update(u.key, u.resource)
            counted = _CLUSTER_KIND.get(u.key.kind)
            if counted is not None:
                keys = self._cluster[counted]
                keys.discard(u.key) if u.resource is None else keys.add(u.key)
                self._metrics.cluster[counted].set(len(keys))
        self._graph.on_updates(
            [(u.key, u.resource) for u in updates if u.key.kind is not FelixConfiguration],
            flush=False,
        )

    def on_block_updates(self, blocks: Sequence[Block]) -> None:
        self._metrics.calc_updates.inc(len(blocks))
        self._graph.on_block_updates(blocks, flush=False)

    def flush(self) -> None:
        self._graph.flush_in_sync()


def tune_gc() -> None:
    """Felix holds large, long-lived state (resources, IP set members, chains). With CPython's
    default threshold (a young collection every 700 allocations) the cyclic collector takes
    about a third of the CPU of a cold start; collecting young objects less often saves most
    of that. What waits for collection is at most that many objects in reference cycles."""
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


def main(environ: Mapping[str, str] | None = None) -> None:
    tune_gc()
    env = dict(os.environ if environ is None else environ)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per etcd request otherwise
    try:
        felix = Felix(env)
    except ValueError as exc:  # ConfigError and malformed ETCD_* settings
        log.error("invalid configuration: %s", exc)
        sys.exit(2)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: felix.stop_event.set())
    try:
        code = felix.run()
    except DatastoreTlsError as exc:
        log.error("cannot reach the datastore: %s", exc)
        sys.exit(1)
    if code == _RESTART:
        # The same interpreter and arguments: right for the console script and for `-m`.
        programs.replace_process([sys.executable, *sys.orig_argv[1:]])
    sys.exit(code)
