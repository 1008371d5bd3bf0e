"""In-process Neutron with the Calico driver against a real etcd (see conftest.py).

`CalicoMl2TestCase` is Neutron's own `Ml2PluginV2TestCase` (in-memory sqlite, REST API
through webtest) with `mechanism_drivers = calico` loaded through its entry point, pointed
at the test's etcd. The driver's background Neutron DB work goes to a `ManualExecutor`
that the test drains on its own thread, because the in-memory sqlite database must not be
used from other threads; `elect_leader = True` subclasses run the real elector and watchers.
"""

from __future__ import annotations

import json
import os
import queue
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any
from unittest import mock

from neutron.tests.unit.plugins.ml2 import test_plugin
from neutron_lib import constants as n_const
from neutron_lib import context as n_context
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory
from oslo_config import cfg

from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.model.status_keys import NO_REGION
from calico.openstack import keys
from calico.openstack.mech_driver import CalicoMechanismDriver
from calico.testing.etcd_server import EtcdServer

HOST1 = "compute-1"
HOST2 = "compute-2"


class ManualExecutor(Executor):
    """Queues work until the test runs it with `run_pending` on its own thread."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = (
            queue.Queue()
        )
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        if self._shutdown:
            future.cancel()
            return future
        self._queue.put((future, lambda: fn(*args, **kwargs), ()))
        return future

    def run_pending(self, wait: float = 0.0) -> int:
        """Run everything queued (waiting up to `wait` s for the first item); how many ran."""
        ran = 0
        while True:
            try:
                if ran == 0 and wait > 0:
                    future, call, _ = self._queue.get(timeout=wait)
                else:
                    future, call, _ = self._queue.get_nowait()
            except queue.Empty:
                return ran
            ran += 1
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        while True:
            try:
                future, _, _ = self._queue.get_nowait()
            except queue.Empty:
                return
            future.cancel()


class CalicoMl2TestCase(test_plugin.Ml2PluginV2TestCase):  # type: ignore[misc]
    _mechanism_drivers = ["calico"]
    elect_leader = False
    etcd: EtcdServer  # set by conftest's autouse fixture

    def setUp(self) -> None:
        self.executor = ManualExecutor()
        for patcher in (
            mock.patch.object(CalicoMechanismDriver, "elect_leader", self.elect_leader),
            mock.patch.object(
                CalicoMechanismDriver, "db_executor_factory", staticmethod(lambda: self.executor)
            ),
            mock.patch.dict(os.environ),
        ):
            patcher.start()
            self.addCleanup(patcher.stop)
        os.environ.pop("ETCD_ENDPOINTS", None)
        super().setUp()
        self.calico: CalicoMechanismDriver = self.plugin.mechanism_manager.mech_drivers[
            "calico"
        ].obj
        self.addCleanup(self.calico.stop)
        self.backend = EtcdBackend(EtcdConfig(endpoints=(self.etcd.endpoint,)))
        self.addCleanup(self.backend.close)
        self.admin = n_context.get_admin_context()
        self.namespace = keys.endpoint_namespace(None)
        self.region_str = NO_REGION

    def setup_config(self) -> None:
        super().setup_config()
        cfg.CONF.set_override("etcd_host", "127.0.0.1", group="calico")
        cfg.CONF.set_override("etcd_port", self.etcd.client_port, group="calico")

    # -- etcd ---------------------------------------------------------------------------------

    def etcd_json(self, key: str) -> Any:
        kv = self.backend.get(key)
        return None if kv is None else json.loads(kv.value)

    def wep_key(self, host: str, device_id: str, port_id: str) -> str:
        name = keys.endpoint_name(host, device_id, port_id)
        return f"/calico/resources/v3/projectcalico.org/workloadendpoints/{self.namespace}/{name}"

    def policy_key(self, sg_id: str) -> str:
        return (
            f"/calico/resources/v3/projectcalico.org/networkpolicies/{self.namespace}/"
            f"{keys.policy_name(sg_id)}"
        )

    def subnet_json(self, subnet_id: str) -> Any:
        return self.etcd_json(keys.subnet_key(self.region_str, subnet_id))

    def weps(self) -> dict[str, Any]:
        prefix = f"/calico/resources/v3/projectcalico.org/workloadendpoints/{self.namespace}/"
        return {
            kv.key[len(prefix) :]: json.loads(kv.value) for kv in self.backend.list(prefix).items
        }

    # -- Neutron ------------------------------------------------------------------------------

    def felix_heartbeat(self, host: str, first: bool = False) -> None:
        self.calico.felix_alive(host, {"time": "now", "uptime": 1.0, "first_update": first})
        self.executor.run_pending()

    def make_net(self, network_type: str = "flat", name: str = "net1", **kwargs: Any) -> Any:
        args: dict[str, Any] = {"provider:network_type": network_type}
        if network_type in ("flat", "vlan"):
            args["provider:physical_network"] = self.physnet
        args.update(kwargs)
        return self._make_network(
            self.fmt, name, True, as_admin=True, arg_list=tuple(args), **args
        )["network"]

    def make_subnet(self, net: Any, cidr: str = "198.18.1.0/24", **kwargs: Any) -> Any:
        return self._make_subnet(
            self.fmt, {"network": net}, gateway=cidr.rsplit(".", 1)[0] + ".1", cidr=cidr, **kwargs
        )["subnet"]

    def make_vm_port(
        self, net: Any, host: str | None = HOST1, device_id: str = "vm-1", **kwargs: Any
    ) -> Any:
        args: dict[str, Any] = {"device_owner": "compute:nova", "device_id": device_id}
        arg_list: tuple[str, ...] = ()
        if host is not None:
            args["binding:host_id"] = host
            arg_list = ("binding:host_id",)
        args.update(kwargs)
        return self._make_port(
            self.fmt, net["id"], as_admin=True, arg_list=arg_list + tuple(kwargs), **args
        )["port"]

    def update_port(self, port_id: str, **changes: Any) -> Any:
        return self._update("ports", port_id, {"port": changes}, as_admin=True)["port"]

    def create_sg_rule(self, sg_id: str, **rule: Any) -> Any:
        """A security group rule through Neutron's API (IPv4 unless `ethertype` says)."""
        body = {"security_group_id": sg_id, "ethertype": "IPv4"} | rule
        req = self.new_create_request(
            "security-group-rules", {"security_group_rule": body}, self.fmt
        )
        res = req.get_response(self.api)
        self._check_http_response(res)
        return self.deserialize(self.fmt, res)["security_group_rule"]

    def delete_sg_rule(self, rule_id: str) -> None:
        res = self.new_delete_request("security-group-rules", rule_id).get_response(self.api)
        self._check_http_response(res, 204)

    def show_port(self, port_id: str) -> Any:
        return self._show("ports", port_id, as_admin=True)["port"]

    def l3(self) -> Any:
        return directory.get_plugin(plugin_constants.L3)

    def status_of(self, port_id: str) -> str:
        return str(self.plugin.get_port(self.admin, port_id)["status"])


def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, step: Callable[[], Any] | None = None
) -> Any:
    """Poll condition (running step first each round) until truthy; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if step is not None:
            step()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {condition}")
        time.sleep(0.02)


ACTIVE = n_const.PORT_STATUS_ACTIVE
DOWN = n_const.PORT_STATUS_DOWN
ERROR = n_const.PORT_STATUS_ERROR
