"""The Calico ML2 mechanism driver: Neutron's hooks for ports, SGs and subnets -> etcd.

Loaded by neutron-server through the entry point `neutron.ml2.mechanism_drivers: calico`.

Request path (Neutron's API threads): port/subnet postcommits and the callback registry
(security groups, their rules, floating IPs) re-read what changed from the Neutron DB,
translate it (`calico.openstack.translate`) and write it with CAS (`calico.openstack.store`).
A datastore failure there never fails the API call: it is logged and a resync is requested
in the background (`calico.openstack.leadership.Repair`), which converges etcd once it is
reachable again.

Leader path (`calico.openstack.leadership`): every process joins the region's election; the
leader resyncs and turns Felix status into Neutron agent state and port status through this
driver. All Neutron DB work started by those threads goes through `db_executor`, one
"calico-neutron-db" thread (FIFO) in production; tests substitute an executor they drain
themselves, because the in-memory sqlite database of Neutron's test base must only be
touched from the test's thread.

Decisions (which port update means delete/rewrite, status mapping, binding refusals, agent
state) are the pure functions of `calico.openstack.decisions`.
"""

from __future__ import annotations

import logging
import os
import threading
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, ClassVar

from neutron.db import provisioning_blocks
from neutron.plugins.ml2.drivers import mech_agent
from neutron_lib import constants as n_const
from neutron_lib import context as n_context
from neutron_lib import exceptions as n_exc
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory
from neutron_lib.plugins.ml2 import api
from oslo_config import cfg

from calico.datastore.api import Backend, DatastoreError, DatastoreTlsError
from calico.datastore.etcd import EtcdBackend
from calico.datastore.etcd_tls import refuse_bad_tls
from calico.model.endpoints import WorkloadEndpoint
from calico.model.policy import NetworkPolicy
from calico.openstack import keys
from calico.openstack.decisions import (
    AGENT_TYPE_FELIX,
    NETWORK_TYPES,
    EndpointPlan,
    PortDict,
    binding_refusal,
    endpoint_name_for,
    felix_agent_state,
    floating_ip_port_ids,
    options_from_conf,
    plan_port_update,
    port_status_for_report,
)
from calico.openstack.leadership import Leadership, ProcessState, Repair
from calico.openstack.settings import SECTION, CalicoOptions, section_options
from calico.openstack.store import OpenStackStore, ResyncReport
from calico.openstack.translate import (
    PortExtras,
    TranslationError,
    dhcp_subnet_data,
    endpoint_for_port,
    is_endpoint_port,
    policy_for_security_group,
)

log = logging.getLogger(__name__)

# vif_details as networking-calico: Nova's "tap" VIF plugging with a fixed host-side MAC.
VIF_DETAILS = {portbindings.CAP_PORT_FILTER: True, "mac_address": "00:61:fe:ed:ca:fe"}

# -- options -----------------------------------------------------------------------------------

_OSLO_TYPES = {"str": cfg.StrOpt, "int": cfg.IntOpt, "port": cfg.PortOpt, "bool": cfg.BoolOpt}
# Every networking-calico option, so that a value calico-py cannot honour is refused.
CALICO_OPTS = [
    _OSLO_TYPES[o.kind](o.name, default=o.default, help=o.help) for o in section_options(SECTION)
]


def register_options(conf: Any) -> None:
    conf.register_opts(CALICO_OPTS, group=SECTION)


register_options(cfg.CONF)


def _neutron_db_executor() -> Executor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="calico-neutron-db")


class CalicoMechanismDriver(mech_agent.SimpleAgentMechanismDriverBase):  # type: ignore[misc]
    # Seams for in-process tests, patched on the class since ML2 instantiates the driver
    # itself: whether to join the leader election, and the executor for our DB work.
    elect_leader: ClassVar[bool] = True
    db_executor_factory: ClassVar[Callable[[], Executor]] = staticmethod(_neutron_db_executor)

    def __init__(self) -> None:
        super().__init__(AGENT_TYPE_FELIX, portbindings.VIF_TYPE_TAP, dict(VIF_DETAILS))
        self._state_lock = threading.Lock()
        self._state: ProcessState | None = None
        self._reset_after_fork()

    def _reset_after_fork(self) -> None:
        """Thread-side state; a forked child starts it afresh (locks may have been held)."""
        self.db_executor: Executor = type(self).db_executor_factory()
        # Striped locks so two API threads writing one port's endpoint do it in DB order.
        self._port_locks = [threading.Lock() for _ in range(64)]
        self._leadership: Leadership | None = None
        self._repair = Repair(self._process_state)

    @property
    def connectivity(self) -> str:
        # Calico routes (no L2 between workloads).
        return str(portbindings.CONNECTIVITY_L3)

    # -- life cycle ---------------------------------------------------------------------------

    def initialize(self) -> None:
        for event in (events.AFTER_CREATE, events.AFTER_UPDATE, events.AFTER_DELETE):
            registry.subscribe(self._on_security_group, resources.SECURITY_GROUP, event)
            registry.subscribe(self._on_security_group_rule, resources.SECURITY_GROUP_RULE, event)
            registry.subscribe(self._on_floating_ip, resources.FLOATING_IP, event)
        # Forked API/RPC workers start their own elector after the fork.
        registry.subscribe(self._after_process_init, resources.PROCESS, events.AFTER_INIT)
        _report_bad_tls(self._process_state().backend)
        log.info("Calico mechanism driver initialised")

    def _after_process_init(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        self._process_state()

    def _process_state(self) -> ProcessState:
        with self._state_lock:
            state = self._state
            if state is not None and state.pid == os.getpid():
                return state
            if state is not None:
                # Forked: the parent's threads did not come along and its connections
                # must not be shared; start afresh (without closing the parent's sockets).
                log.info(
                    "process %d forked from %d: restarting Calico state", os.getpid(), state.pid
                )
                self._reset_after_fork()
            options = options_from_conf(cfg.CONF)
            backend = EtcdBackend(options.etcd_config(os.environ))
            state = ProcessState(
                os.getpid(), options, backend, OpenStackStore(backend, options.openstack_region)
            )
            self._state = state
            if type(self).elect_leader:
                self._leadership = Leadership(
                    state, self, lambda: self._in_db_thread(self.resync_now)
                )
                self._leadership.start()
            return state

    def stop(self) -> None:
        """Stop every thread and connection of this process (tests; clean shutdown)."""
        leadership = self._leadership
        if leadership is not None:
            leadership.request_stop()
        self._repair.stop()
        # Cancel queued DB work first: a leader thread may be waiting on it.
        self.db_executor.shutdown(wait=False, cancel_futures=True)
        state = self._state
        if state is not None and state.elector is not None:
            state.elector.stop()
        if leadership is not None:
            leadership.join(10)
        if state is not None:
            state.backend.close()

    @property
    def store(self) -> OpenStackStore:
        return self._process_state().store

    @property
    def options(self) -> CalicoOptions:
        return self._process_state().options

    @property
    def is_leader(self) -> bool:
        elector = self._process_state().elector
        return elector is not None and elector.is_leader

    def _in_db_thread(self, fn: Callable[[], Any]) -> Any:
        return self.db_executor.submit(fn).result()

    # -- resync -------------------------------------------------------------------------------

    def resync_now(self) -> ResyncReport:
        """Make etcd match the Neutron DB (endpoints, SG policies, DHCP subnets); CAS writes.

        Runs in the calling thread, which must be one allowed to use the Neutron DB."""
        return self.store.resync(lambda: self._snapshot(n_context.get_admin_context()))

    def _snapshot(
        self, ctx: Any
    ) -> tuple[list[WorkloadEndpoint], list[NetworkPolicy], dict[str, dict[str, Any]]]:
        plugin = directory.get_plugin()
        region = self.options.openstack_region
        subnets = {s["id"]: s for s in plugin.get_subnets(ctx)}
        groups = plugin.get_security_groups(ctx)
        rules = _group_by(plugin.get_security_group_rules(ctx), "security_group_id")
        networks = {n["id"]: n.get("name") for n in plugin.get_networks(ctx, fields=["id", "name"])}
        fips = _group_by(self._floating_ips(ctx, None), "port_id")
        sg_names = {g["id"]: g.get("name") or "" for g in groups}

        policies = []
        for group in groups:
            try:
                policies.append(
                    policy_for_security_group(group, rules.get(group["id"], []), region)
                )
            except TranslationError as exc:
                log.error("resync: security group %s not translatable: %s", group["id"], exc)
        endpoints = []
        for port in plugin.get_ports(ctx):
            if endpoint_name_for(port) is None:
                continue
            extras = PortExtras(
                subnets={
                    i["subnet_id"]: subnets[i["subnet_id"]]
                    for i in port.get("fixed_ips", ())
                    if i["subnet_id"] in subnets
                },
                security_group_names={
                    g: sg_names[g] for g in port.get("security_groups", ()) if g in sg_names
                },
                network_name=networks.get(port["network_id"]),
                floating_ips=fips.get(port["id"], ()),
            )
            try:
                endpoints.append(endpoint_for_port(port, extras, region))
            except TranslationError as exc:
                log.error("resync: port %s not translatable: %s", port["id"], exc)
        dhcp = {}
        for subnet_id, subnet in subnets.items():
            try:
                data = dhcp_subnet_data(subnet)
            except TranslationError as exc:
                log.error("resync: %s", exc)
                continue
            if data is not None:
                dhcp[subnet_id] = data
        return endpoints, policies, dhcp

    @staticmethod
    def _floating_ips(ctx: Any, port_id: str | None) -> list[dict[str, Any]]:
        l3 = directory.get_plugin(plugin_constants.L3)
        if l3 is None:
            return []
        filters = {"port_id": [port_id]} if port_id else None
        return [f for f in l3.get_floatingips(ctx, filters=filters) if f.get("port_id")]

    # -- datastore failure -> background repair ------------------------------------------------

    def _datastore_failed(self, what: str, exc: Exception) -> None:
        # Never fail the Neutron API call: etcd catches up through a resync, which we ask the
        # leader for (from a background thread) as soon as etcd answers again.
        tls = isinstance(exc, DatastoreTlsError)
        fix = "fix the [calico] etcd_* TLS files, then " if tls else ""
        log.error("Calico: %s failed (%s); %sa resync will repair etcd", what, exc, fix)
        self._repair.request()

    # -- binding ------------------------------------------------------------------------------

    def bind_port(self, context: Any) -> None:
        port = context.current
        agents = context.host_agents(self.agent_type) or []
        reason = binding_refusal(
            context.host,
            port.get(portbindings.VNIC_TYPE, portbindings.VNIC_NORMAL),
            [bool(a.get("alive")) for a in agents],
            [s[api.NETWORK_TYPE] for s in context.segments_to_bind],
            self._qos_policy_with_rules(port),
        )
        if reason is not None:
            log.warning("Calico cannot bind port %s: %s", port["id"], reason)
            return
        super().bind_port(context)

    @staticmethod
    def _qos_policy_with_rules(port: PortDict) -> str | None:
        """The port's QoS policy (or its network's) if it has rules. Neutron refuses rules
        on Calico ports only when no QoS driver accepts them; with a second mechanism driver
        that has one, a policy given to a port before binding would pass unnoticed."""
        policy_id = port.get("qos_policy_id") or port.get("qos_network_policy_id")
        if not policy_id:
            return None
        qos = directory.get_plugin(plugin_constants.QOS)
        if qos is None:
            return str(policy_id)  # cannot tell: fail closed
        policy = _get_or_none(qos.get_policy, n_context.get_admin_context(), policy_id)
        return str(policy_id) if policy is None or policy.get("rules") else None

    def check_segment_for_agent(self, segment: Mapping[str, Any], agent: Mapping[str, Any]) -> bool:
        if agent.get("agent_type") != self.agent_type:
            return False
        if segment[api.NETWORK_TYPE] not in NETWORK_TYPES:
            # (bind_port has already logged a refusal if no segment at all is bindable.)
            log.debug(
                "Calico cannot bind segment %s of network %s: network type %s (only %s)",
                segment.get(api.ID),
                segment.get("network_id"),
                segment[api.NETWORK_TYPE],
                "/".join(NETWORK_TYPES),
            )
            return False
        return True

    def get_allowed_network_types(self, agent: Any = None) -> tuple[str, ...]:
        return NETWORK_TYPES

    def get_mappings(self, agent: Any) -> dict[str, Any]:
        return {}  # no bridges: a flat network's physnet is irrelevant to a routed host

    # -- networks and subnets -----------------------------------------------------------------

    def create_network_postcommit(self, context: Any) -> None:
        pass  # the name reaches endpoints (as a label) when their ports are written

    def update_network_postcommit(self, context: Any) -> None:
        if (context.original or {}).get("name") == context.current.get("name"):
            return
        # Its endpoints carry the network's name as a label.
        ctx = n_context.get_admin_context()
        ports = directory.get_plugin().get_ports(
            ctx, filters={"network_id": [context.current["id"]]}, fields=["id", "device_owner"]
        )
        for port in ports:
            if is_endpoint_port(port):
                self.sync_port(ctx, port["id"])

    def delete_network_postcommit(self, context: Any) -> None:
        pass

    def create_subnet_postcommit(self, context: Any) -> None:
        self._sync_subnet(context.current)

    def update_subnet_postcommit(self, context: Any) -> None:
        self._sync_subnet(context.current)

    def delete_subnet_postcommit(self, context: Any) -> None:
        subnet_id = context.current["id"]
        try:
            self.store.delete_subnet(subnet_id)
        except DatastoreError as exc:
            self._datastore_failed(f"deleting subnet {subnet_id}", exc)

    def _sync_subnet(self, subnet: Mapping[str, Any]) -> None:
        try:
            data = dhcp_subnet_data(subnet)
        except TranslationError as exc:
            log.error("Calico cannot represent %s", exc)
            return
        try:
            if data is None:
                self.store.delete_subnet(subnet["id"])
            else:
                self.store.write_subnet(subnet["id"], data)
        except DatastoreError as exc:
            self._datastore_failed(f"writing subnet {subnet['id']}", exc)

    # -- ports --------------------------------------------------------------------------------

    def create_port_postcommit(self, context: Any) -> None:
        # Usually still unbound here: binding commits later as an update.
        self._apply_plan(context.current["id"], plan_port_update(None, context.current))

    def update_port_postcommit(self, context: Any) -> None:
        self._apply_plan(context.current["id"], plan_port_update(context.original, context.current))

    def delete_port_postcommit(self, context: Any) -> None:
        name = endpoint_name_for(context.current)
        if name is not None:
            self._delete_endpoint(context.current["id"], name)

    def _apply_plan(self, port_id: str, plan: EndpointPlan) -> None:
        if plan.delete is not None:
            self._delete_endpoint(port_id, plan.delete)
        if plan.write:
            self.sync_port(n_context.get_admin_context(), port_id)

    def _port_lock(self, port_id: str) -> threading.Lock:
        return self._port_locks[zlib.crc32(port_id.encode()) % len(self._port_locks)]

    def _delete_endpoint(self, port_id: str, name: str) -> None:
        try:
            with self._port_lock(port_id):
                self.store.delete_endpoint(name)
        except DatastoreError as exc:
            self._datastore_failed(f"deleting endpoint {name}", exc)

    def sync_port(self, ctx: Any, port_id: str) -> None:
        """Write the endpoint of port_id as the DB has it now (nothing if it has none).

        Re-reading rather than using the hook's copy means a late writer never puts back
        an older state than an earlier one."""
        with self._port_lock(port_id):
            port = _get_or_none(directory.get_plugin().get_port, ctx, port_id)
            if port is None or endpoint_name_for(port) is None:
                return
            try:
                endpoint = endpoint_for_port(
                    port, self._port_extras(ctx, port), self.options.openstack_region
                )
            except TranslationError as exc:
                log.error("Calico cannot represent port %s: %s", port_id, exc)
                return
            try:
                self.store.write_endpoint(endpoint)
            except DatastoreError as exc:
                self._datastore_failed(f"writing endpoint {endpoint.name}", exc)

    def _port_extras(self, ctx: Any, port: PortDict) -> PortExtras:
        plugin = directory.get_plugin()
        subnet_ids = sorted({i["subnet_id"] for i in port.get("fixed_ips", ())})
        subnets = plugin.get_subnets(ctx, filters={"id": subnet_ids}) if subnet_ids else []
        sg_ids = list(port.get("security_groups") or ())
        groups = (
            plugin.get_security_groups(ctx, filters={"id": sg_ids}, fields=["id", "name"])
            if sg_ids
            else []
        )
        network = _get_or_none(plugin.get_network, ctx, port["network_id"])
        return PortExtras(
            subnets={s["id"]: s for s in subnets},
            security_group_names={g["id"]: g.get("name") or "" for g in groups},
            network_name=network.get("name") if network else None,
            floating_ips=self._floating_ips(ctx, port["id"]),
        )

    # -- callback registry: security groups, rules, floating IPs --------------------------------

    def _on_security_group(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        sg_id = payload.resource_id
        ctx = n_context.get_admin_context()
        self.sync_security_group(ctx, sg_id)
        if event == events.AFTER_UPDATE and len(payload.states) == 2:
            before, after = payload.states
            if (before or {}).get("name") != (after or {}).get("name"):
                # Member endpoints carry the SG's name as a label.
                for port_id in self._security_group_ports(ctx, sg_id):
                    self.sync_port(ctx, port_id)

    def _on_security_group_rule(
        self, resource: str, event: str, trigger: Any, payload: Any
    ) -> None:
        sg_id = (payload.metadata or {}).get("security_group_id")
        if not sg_id and payload.states:
            sg_id = (payload.latest_state or {}).get("security_group_id")
        if sg_id:
            self.sync_security_group(n_context.get_admin_context(), sg_id)

    def _on_floating_ip(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        ctx = n_context.get_admin_context()
        for port_id in sorted(floating_ip_port_ids(payload.states)):
            self.sync_port(ctx, port_id)

    def sync_security_group(self, ctx: Any, sg_id: str) -> None:
        """Write the SG's NetworkPolicy as the DB has it now, or delete it if the SG is gone."""
        plugin = directory.get_plugin()
        group = _get_or_none(plugin.get_security_group, ctx, sg_id)
        try:
            if group is None:
                self.store.delete_policy(keys.policy_name(sg_id))
                return
            rules = plugin.get_security_group_rules(ctx, filters={"security_group_id": [sg_id]})
            try:
                policy = policy_for_security_group(group, rules, self.options.openstack_region)
            except TranslationError as exc:
                log.error("Calico cannot represent security group %s: %s", sg_id, exc)
                return
            self.store.write_policy(policy)
        except DatastoreError as exc:
            self._datastore_failed(f"writing policy for security group {sg_id}", exc)

    @staticmethod
    def _security_group_ports(ctx: Any, sg_id: str) -> list[str]:
        plugin = directory.get_plugin()
        bindings = plugin._get_port_security_group_bindings(
            ctx, filters={"security_group_id": [sg_id]}
        )
        return sorted({b["port_id"] for b in bindings})

    # -- status feedback (StatusSink; called by the leader's FelixStatusWatcher thread) --------

    def felix_alive(self, host: str, status: Mapping[str, Any]) -> None:
        self._queue_db_work(self.report_felix_alive, host, dict(status))

    def felix_dead(self, host: str) -> None:
        self._queue_db_work(self.report_felix_dead, host)

    def endpoint_status(self, host: str, port_id: str, status: str | None) -> None:
        self._queue_db_work(self.report_endpoint_status, host, port_id, status)

    def _queue_db_work(self, fn: Callable[..., None], *args: Any) -> None:
        future = self.db_executor.submit(fn, *args)
        future.add_done_callback(_log_failure(fn.__name__, args))

    def report_felix_alive(self, host: str, status: Mapping[str, Any]) -> None:
        ctx = n_context.get_admin_context()
        directory.get_plugin().create_or_update_agent(ctx, felix_agent_state(host, status))

    def report_felix_dead(self, host: str) -> None:
        """Felix on host stopped reporting: its endpoint ports are in ERROR."""
        ctx = n_context.get_admin_context()
        plugin = directory.get_plugin()
        for port in plugin.get_ports(ctx, filters={portbindings.HOST_ID: [host]}):
            wanted = port_status_for_report(port, host, None)
            if wanted is not None:
                log.warning("Felix on %s is gone: port %s -> %s", host, port["id"], wanted)
                plugin.update_port_status(ctx, port["id"], wanted, host)

    def report_endpoint_status(self, host: str, port_id: str, status: str | None) -> None:
        ctx = n_context.get_admin_context()
        plugin = directory.get_plugin()
        port = _get_or_none(plugin.get_port, ctx, port_id)
        wanted = port_status_for_report(port, host, status)
        if wanted is None:
            return
        log.info("port %s on %s is %s -> %s", port_id, host, status, wanted)
        if wanted == n_const.PORT_STATUS_ACTIVE:
            # Release the L2-agent provisioning block the base class put in at binding, as
            # an L2 agent's update_device_up does; that is what turns the port ACTIVE.
            provisioning_blocks.provisioning_complete(
                ctx, port_id, resources.PORT, provisioning_blocks.L2_AGENT_ENTITY
            )
        plugin.update_port_status(ctx, port_id, wanted, host)


# -- helpers -----------------------------------------------------------------------------------


def _report_bad_tls(backend: Backend) -> None:
    """Say at start-up, not at the first port, that etcd refuses our TLS files. Neutron runs
    on (as when etcd is down): every write fails with the same sentence and is retried by a
    resync once the files are fixed."""
    try:
        refuse_bad_tls(backend)
    except DatastoreTlsError as exc:
        log.error("Calico: cannot use etcd, %s; nothing is written until that is fixed", exc)


def _group_by(items: Iterable[Mapping[str, Any]], field: str) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        if item.get(field):
            grouped[str(item[field])].append(item)
    return dict(grouped)


def _get_or_none(getter: Callable[..., Any], ctx: Any, object_id: str) -> Any:
    """getter(ctx, id), or None when Neutron says it does not exist."""
    try:
        return getter(ctx, object_id)
    except n_exc.NotFound:
        return None


def _log_failure(what: str, args: tuple[Any, ...]) -> Callable[[Future[None]], None]:
    def check(future: Future[None]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("Calico %s%r failed: %s", what, args, exc, exc_info=exc)

    return check
