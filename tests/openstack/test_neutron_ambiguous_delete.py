"""A delete whose outcome is unknown (the etcd member died mid-request; the client does not
resend deletes and raises OutcomeUnknown) is finished by the driver's store, not left to a
repair resync: the key read back gone is the outcome wanted, still there it is deleted again.
Both cases of the dead member: it applied the delete before dying, or it did not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from neutron_harness import HOST1, CalicoMl2TestCase

from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.datastore.etcd_gateway import OutcomeUnknown
from calico.openstack import keys
from calico.openstack.store import KIND_SUBNET, OpenStackStore
from calico.testing.etcd_server import EtcdServer

pytestmark = pytest.mark.openstack

SUBNET = {"network_id": "n1", "cidr": "198.18.1.0/24", "gateway_ip": "198.18.1.1"}


def dies_on_first_delete(
    backend: EtcdBackend, applied: bool, meanwhile: Callable[[], object] = lambda: None
) -> Callable[..., Any]:
    """backend.delete whose first call fails as when the member died answering it (after
    `meanwhile`, another writer's work)."""
    real = backend.delete
    calls = []

    def delete(key: str, mod_revision: int | None = None) -> Any:
        calls.append(key)
        if len(calls) > 1:
            return real(key, mod_revision)
        if applied:
            real(key, mod_revision)
        meanwhile()
        raise OutcomeUnknown(f"etcd /v3/kv/txn failed, outcome unknown (delete of {key})")

    return delete


@pytest.fixture
def store(calico_etcd: EtcdServer) -> Any:
    backend = EtcdBackend(EtcdConfig(endpoints=(calico_etcd.endpoint,)))
    yield OpenStackStore(backend, None)
    backend.close()


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not applied"])
def test_delete_finished_after_unknown_outcome(store: OpenStackStore, applied: bool) -> None:
    store.write_subnet("s1", SUBNET)
    key = keys.subnet_key(store.region_string, "s1")
    with mock.patch.object(store.backend, "delete", dies_on_first_delete(store.backend, applied)):
        assert store.delete_subnet("s1")
    assert store.backend.get(key) is None


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not applied"])
def test_resync_delete_finished_after_unknown_outcome(store: OpenStackStore, applied: bool) -> None:
    store.write_subnet("gone", SUBNET)
    with mock.patch.object(store.backend, "delete", dies_on_first_delete(store.backend, applied)):
        report = store.resync(lambda: ([], [], {}))
    assert report.deleted == {KIND_SUBNET: ["gone"]}
    assert store.backend.get(keys.subnet_key(store.region_string, "gone")) is None


def test_resync_leaves_a_key_rewritten_meanwhile(store: OpenStackStore) -> None:
    """Not applied, and someone wrote the key since the listing: the guard still holds."""
    store.write_subnet("s1", SUBNET)
    key = keys.subnet_key(store.region_string, "s1")
    newer = lambda: store.backend.put(key, b'{"newer": true}')  # noqa: E731
    with mock.patch.object(
        store.backend, "delete", dies_on_first_delete(store.backend, False, newer)
    ):
        report = store.resync(lambda: ([], [], {}))
    assert report.skipped == {KIND_SUBNET: ["s1"]}
    kv = store.backend.get(key)
    assert kv is not None and kv.value == b'{"newer": true}'


class TestPortDeleteThroughNeutron(CalicoMl2TestCase):
    def test_no_repair_resync_after_an_ambiguous_delete(self) -> None:
        self.felix_heartbeat(HOST1, first=True)
        net = self.make_net()
        self.make_subnet(net)
        port = self.make_vm_port(net, device_id="vm-1")
        key = self.wep_key(HOST1, "vm-1", port["id"])
        assert self.etcd_json(key) is not None
        backend = self.calico.store.backend
        with (
            mock.patch.object(backend, "delete", dies_on_first_delete(backend, applied=False)),
            mock.patch.object(self.calico._repair, "request") as repair,
        ):
            self._delete("ports", port["id"], as_admin=True)
        assert self.etcd_json(key) is None
        repair.assert_not_called()
