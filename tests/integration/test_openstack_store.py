"""OpenStackStore against a real etcd: idempotent CAS writes, resync scope, cluster config."""

from __future__ import annotations

import json
from typing import Any

import pytest

from calico.datastore.api import Backend, KeepsChanging, KeyValue, RevisionConflict
from calico.datastore.client import ResourceClient, encode
from calico.datastore.etcd import EtcdBackend
from calico.model.endpoints import WorkloadEndpoint
from calico.model.felixconfig import FelixConfiguration
from calico.model.keys import ResourceKey
from calico.model.network import ClusterInformation
from calico.model.policy import NetworkPolicy
from calico.openstack import keys
from calico.openstack.store import OpenStackStore, ResyncReport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

NS = keys.endpoint_namespace(None)


def endpoint(
    port: str, host: str = "compute1", ip: str = "10.0.0.1", namespace: str = NS
) -> WorkloadEndpoint:
    return WorkloadEndpoint.model_validate(
        {
            "metadata": {
                "name": keys.endpoint_name(host, "vm1", port),
                "namespace": namespace,
                "labels": {keys.sg_label("sg1"): ""},
            },
            "spec": {
                "orchestrator": "openstack",
                "workload": "vm1",
                "node": host,
                "endpoint": port,
                "interfaceName": keys.interface_name(port),
                "mac": "fa:16:3e:00:00:01",
                "ipNetworks": [f"{ip}/32"],
            },
        }
    )


def policy(sg: str, namespace: str = NS, port: int = 22) -> NetworkPolicy:
    return NetworkPolicy.model_validate(
        {
            "metadata": {"name": keys.policy_name(sg), "namespace": namespace},
            "spec": {
                "selector": f"has({keys.sg_label(sg)})",
                "ingress": [
                    {"action": "Allow", "protocol": "TCP", "destination": {"ports": [port]}}
                ],
            },
        }
    )


SUBNET = {"network_id": "net1", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1"}


def wep_path(name: str, namespace: str = NS) -> str:
    return ResourceKey(WorkloadEndpoint, name, namespace).path


def np_path(name: str, namespace: str = NS) -> str:
    return ResourceKey(NetworkPolicy, name, namespace).path


class ConflictOnce:
    """A Backend whose next update()s first see someone else's write land in between."""

    def __init__(self, inner: Backend, conflicts: int = 1) -> None:
        self.inner = inner
        self.conflicts = conflicts
        self.updates = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def update(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> int:
        self.updates += 1
        if self.conflicts > 0:
            self.conflicts -= 1
            current = self.inner.get(key)
            assert current is not None
            self.inner.put(key, current.value)  # same value, new revision: a racing writer
        return self.inner.update(key, value, mod_revision, lease)


# -- CRUD ----------------------------------------------------------------------------------


def test_endpoint_write_is_idempotent_and_keeps_metadata(backend: EtcdBackend) -> None:
    store = OpenStackStore(backend, None)
    ep = endpoint("port1")
    assert store.write_endpoint(ep) is True
    first = backend.get(wep_path(ep.name))
    assert first is not None
    assert store.write_endpoint(ep) is False
    assert store.write_endpoint(endpoint("port1")) is False  # a fresh but equal object
    same = backend.get(wep_path(ep.name))
    assert same is not None and same.mod_revision == first.mod_revision

    changed = endpoint("port1", ip="10.0.0.2")
    assert store.write_endpoint(changed) is True
    stored = ResourceClient(backend).get(WorkloadEndpoint, ep.name, NS)
    assert stored.spec.ipNetworks == ["10.0.0.2/32"]
    assert stored.metadata.uid == json.loads(first.value)["metadata"]["uid"]
    assert stored.metadata.creationTimestamp

    assert store.delete_endpoint(ep.name) is True
    assert store.delete_endpoint(ep.name) is False
    assert backend.get(wep_path(ep.name)) is None


def test_policy_and_subnet_crud(backend: EtcdBackend) -> None:
    store = OpenStackStore(backend, "r1")
    ns = keys.endpoint_namespace("r1")
    assert store.write_policy(policy("sg1", ns)) is True
    assert store.write_policy(policy("sg1", ns)) is False
    assert store.write_policy(policy("sg1", ns, port=80)) is True
    assert backend.get(np_path("ossg.default.sg1", ns)) is not None
    assert store.delete_policy("ossg.default.sg1") is True
    assert store.delete_policy("ossg.default.sg1") is False

    key = keys.subnet_key("region-r1", "sub1")
    assert store.write_subnet("sub1", SUBNET) is True
    assert store.write_subnet("sub1", dict(SUBNET)) is False
    kv = backend.get(key)
    assert kv is not None and json.loads(kv.value) == SUBNET
    assert store.write_subnet("sub1", {**SUBNET, "dns_servers": ["8.8.8.8"]}) is True
    assert store.delete_subnet("sub1") is True
    assert store.delete_subnet("sub1") is False


def test_wrong_namespace_is_refused(backend: EtcdBackend) -> None:
    store = OpenStackStore(backend, "r1")
    with pytest.raises(ValueError, match="namespace"):
        store.write_endpoint(endpoint("port1"))


def test_cas_conflict_is_retried(backend: EtcdBackend) -> None:
    racing = ConflictOnce(backend, conflicts=2)
    store = OpenStackStore(racing, None)
    store.write_endpoint(endpoint("port1"))
    assert store.write_endpoint(endpoint("port1", ip="10.0.0.9")) is True
    assert racing.updates == 3
    stored = ResourceClient(backend).get(WorkloadEndpoint, endpoint("port1").name, NS)
    assert stored.spec.ipNetworks == ["10.0.0.9/32"]

    store.write_subnet("sub1", SUBNET)
    racing.conflicts = 1
    assert store.write_subnet("sub1", {**SUBNET, "cidr": "10.1.0.0/24"}) is True


def test_endless_conflicts_give_up(backend: EtcdBackend) -> None:
    racing = ConflictOnce(backend, conflicts=100)
    store = OpenStackStore(racing, None)
    store.write_subnet("sub1", SUBNET)
    with pytest.raises(KeepsChanging, match="kept changing"):
        store.write_subnet("sub1", {**SUBNET, "cidr": "10.1.0.0/24"})


def test_garbage_is_replaced_on_write(backend: EtcdBackend) -> None:
    store = OpenStackStore(backend, None)
    ep = endpoint("port1")
    backend.put(wep_path(ep.name), b"{not json")
    backend.put(keys.subnet_key("no-region", "sub1"), b"[1, 2]")
    assert store.write_endpoint(ep) is True
    assert ResourceClient(backend).get(WorkloadEndpoint, ep.name, NS).metadata.uid
    assert store.write_subnet("sub1", SUBNET) is True
    kv = backend.get(keys.subnet_key("no-region", "sub1"))
    assert kv is not None and json.loads(kv.value) == SUBNET


# -- resync ----------------------------------------------------------------------------------


def test_resync_creates_updates_deletes_within_scope(backend: EtcdBackend) -> None:
    store = OpenStackStore(backend, None)
    client = ResourceClient(backend)
    store.write_endpoint(endpoint("keep"))
    store.write_endpoint(endpoint("change"))
    store.write_endpoint(endpoint("extra"))
    store.write_policy(policy("old"))
    store.write_subnet("oldsub", SUBNET)
    # Things resync must never touch:
    foreign_wep = WorkloadEndpoint.model_validate(
        {
            "metadata": {"namespace": NS},
            "spec": {"orchestrator": "k8s", "node": "compute1", "pod": "p", "endpoint": "eth0"},
        }
    )
    client.create(foreign_wep)
    client.create(endpoint("other-ns", namespace="default"))
    client.create(
        NetworkPolicy.model_validate(
            {
                "metadata": {"name": "admin-policy", "namespace": NS},
                "spec": {"ingress": [{"action": "Allow"}]},
            }
        )
    )
    client.create(policy("inregion", namespace=keys.endpoint_namespace("r2")))
    backend.put(keys.subnet_key("region-r2", "sub-r2"), json.dumps(SUBNET).encode())
    backend.put(np_path("broken-admin-policy"), b"garbage")  # not ours, even as garbage
    # Garbage that is ours:
    backend.put(wep_path("compute1-openstack-vm9-junk"), b"garbage")
    backend.put(np_path("ossg.default.junk"), b"garbage")
    backend.put(keys.subnet_key("no-region", "junk"), b"garbage")
    backend.put(np_path("ossg.default.new"), b"garbage")  # wanted: replaced

    report = store.resync(
        lambda: (
            [endpoint("keep"), endpoint("change", ip="10.0.0.7"), endpoint("new")],
            [policy("new")],
            {"newsub": SUBNET, "oldsub": SUBNET},
        )
    )

    assert sorted(report.created["WorkloadEndpoint"]) == [endpoint("new").name]
    assert report.updated["WorkloadEndpoint"] == [endpoint("change").name]
    assert sorted(report.deleted["WorkloadEndpoint"]) == sorted(
        [endpoint("extra").name, "compute1-openstack-vm9-junk"]
    )
    assert report.updated["NetworkPolicy"] == ["ossg.default.new"]
    assert sorted(report.deleted["NetworkPolicy"]) == ["ossg.default.junk", "ossg.default.old"]
    assert report.created["subnet"] == ["newsub"]
    assert report.deleted["subnet"] == ["junk"]
    assert report.changes() == 9
    assert "created 1 WorkloadEndpoint, 1 subnet" in report.summary()
    assert json.loads(json.dumps(report.to_json()))["changes"] == 9

    remaining = {kv.key for kv in backend.list("/calico/").items}
    for path in (
        ResourceKey(WorkloadEndpoint, foreign_wep.name, NS).path,
        wep_path(endpoint("other-ns").name, "default"),
        np_path("admin-policy"),
        np_path("broken-admin-policy"),
        np_path("ossg.default.inregion", keys.endpoint_namespace("r2")),
        keys.subnet_key("region-r2", "sub-r2"),
    ):
        assert path in remaining

    again = store.resync(
        lambda: (
            [endpoint("keep"), endpoint("change", ip="10.0.0.7"), endpoint("new")],
            [policy("new")],
            {"newsub": SUBNET, "oldsub": SUBNET},
        )
    )
    assert again.changes() == 0
    assert again.summary() == "resync: no changes"


def test_resync_delete_loses_to_a_concurrent_write(backend: EtcdBackend) -> None:
    """An extra endpoint rewritten by the live driver after resync listed it survives."""

    class RaceBeforeDelete:
        def __init__(self, inner: Backend) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def delete(self, key: str, mod_revision: int | None = None) -> KeyValue:
            store.write_endpoint(endpoint("late", ip="10.9.9.9"))  # the live driver
            return self.inner.delete(key, mod_revision)

    racing_store = OpenStackStore(RaceBeforeDelete(backend), None)
    store = OpenStackStore(backend, None)
    store.write_endpoint(endpoint("late"))
    report = racing_store.resync(lambda: ([], [], {}))
    assert report.skipped == {"WorkloadEndpoint": [endpoint("late").name]}
    assert report.changes() == 0
    assert backend.get(wep_path(endpoint("late").name)) is not None


def test_resync_leaves_writes_made_after_it_listed_etcd(backend: EtcdBackend) -> None:
    """The live driver writes while resync reads Neutron's DB: its newer writes win."""
    store = OpenStackStore(backend, None)
    store.write_endpoint(endpoint("moved", ip="10.0.0.1"))
    store.write_subnet("sub", SUBNET)

    def snapshot_while_the_driver_writes() -> Any:
        # Between resync's listing and its snapshot: the driver updates one endpoint,
        # creates another and changes a subnet, each from a newer DB state.
        store.write_endpoint(endpoint("moved", ip="10.0.0.2"))
        store.write_endpoint(endpoint("born", ip="10.0.0.3"))
        store.write_subnet("sub", {**SUBNET, "dns_servers": ["198.18.0.53"]})
        # The snapshot was read before those writes committed: older data, differing from
        # what resync listed too, so each of its writes is a CAS that must lose.
        return (
            [endpoint("moved", ip="10.0.0.5"), endpoint("born", ip="10.0.0.9")],
            [],
            {"sub": {**SUBNET, "dns_servers": ["198.18.0.99"]}},
        )

    report = store.resync(snapshot_while_the_driver_writes)

    assert report.to_json()["skipped"] == {
        "WorkloadEndpoint": sorted([endpoint("moved").name, endpoint("born").name]),
        "subnet": ["sub"],
    }
    assert report.changes() == 0
    moved = backend.get(wep_path(endpoint("moved").name))
    born = backend.get(wep_path(endpoint("born").name))
    assert moved is not None and born is not None
    assert json.loads(moved.value)["spec"]["ipNetworks"] == ["10.0.0.2/32"]
    assert json.loads(born.value)["spec"]["ipNetworks"] == ["10.0.0.3/32"]
    sub = backend.get(keys.subnet_key("no-region", "sub"))
    assert sub is not None and json.loads(sub.value)["dns_servers"] == ["198.18.0.53"]


def test_report_shape() -> None:
    report = ResyncReport(created={"subnet": ["b", "a"]}, updated={}, deleted={})
    assert report.changes() == 2
    assert report.to_json()["created"] == {"subnet": ["a", "b"]}
    assert report.summary() == "resync: created 2 subnet"


# -- cluster config ------------------------------------------------------------------------


def test_ensure_cluster_config_from_scratch(backend: EtcdBackend) -> None:
    store = OpenStackStore(backend, None)
    store.ensure_cluster_config()
    client = ResourceClient(backend)
    felix = client.get(FelixConfiguration, "default").spec_values()
    assert felix == {"interfacePrefix": "tap", "endpointReportingEnabled": True}
    info = client.get(ClusterInformation, "default")
    assert info.spec.datastoreReady is True
    assert info.spec.clusterType is not None and "openstack" in info.spec.clusterType.split(",")
    assert info.spec.clusterGUID
    revision = backend.list("/calico/").revision
    store.ensure_cluster_config()
    assert backend.list("/calico/").revision == revision  # nothing rewritten


def test_ensure_cluster_config_keeps_fields(backend: EtcdBackend) -> None:
    client = ResourceClient(backend)
    client.create(
        FelixConfiguration.model_validate(
            {
                "metadata": {"name": "default"},
                "spec": {"interfacePrefix": "cali", "logSeverityScreen": "Debug"},
            }
        )
    )
    client.create(
        ClusterInformation.model_validate(
            {
                "metadata": {"name": "default"},
                "spec": {
                    "clusterGUID": "abc",
                    "clusterType": "k8s,bgp",
                    "calicoVersion": "v3.30",
                    "datastoreReady": False,
                },
            }
        )
    )
    OpenStackStore(backend, None).ensure_cluster_config()
    felix = client.get(FelixConfiguration, "default")
    assert felix.spec_values() == {
        "interfacePrefix": "cali,tap",
        "logSeverityScreen": "Debug",
        "endpointReportingEnabled": True,
    }
    info = client.get(ClusterInformation, "default").spec
    assert (info.clusterGUID, info.clusterType, info.calicoVersion, info.datastoreReady) == (
        "abc",
        "k8s,bgp,openstack",
        "v3.30",
        True,
    )

    # Already containing tap: left alone.
    client.replace(
        FelixConfiguration.model_validate(
            {
                "metadata": {"name": "default"},
                "spec": {"interfacePrefix": "tap,cali", "endpointReportingEnabled": True},
            }
        )
    )
    OpenStackStore(backend, None).ensure_cluster_config()
    assert client.get(FelixConfiguration, "default").spec_values()["interfacePrefix"] == "tap,cali"


def test_ensure_cluster_config_retries_on_conflict(backend: EtcdBackend) -> None:
    client = ResourceClient(backend)
    client.ensure_initialized()
    client.create(FelixConfiguration.model_validate({"metadata": {"name": "default"}}))
    racing = ConflictOnce(backend, conflicts=1)
    OpenStackStore(racing, None).ensure_cluster_config()
    assert client.get(FelixConfiguration, "default").spec_values()["interfacePrefix"] == "tap"


def test_ensure_cluster_config_replaces_garbage(backend: EtcdBackend) -> None:
    backend.put(ResourceKey(FelixConfiguration, "default").path, b"nonsense")
    OpenStackStore(backend, None).ensure_cluster_config()
    felix = ResourceClient(backend).get(FelixConfiguration, "default")
    assert felix.spec_values()["interfacePrefix"] == "tap"


def test_encode_roundtrip_sanity(backend: EtcdBackend) -> None:
    """Content compare ignores metadata the client fills in."""
    ep = endpoint("port1")
    stored = ResourceClient(backend).create(ep)
    assert json.loads(encode(stored))["metadata"]["uid"]
    assert OpenStackStore(backend, None).write_endpoint(ep) is False


def test_region_namespaces_do_not_mix(backend: EtcdBackend) -> None:
    plain = OpenStackStore(backend, None)
    region = OpenStackStore(backend, "r1")
    plain.write_endpoint(endpoint("p1"))
    report = region.resync(lambda: ([], [], {}))
    assert report.changes() == 0
    assert backend.get(wep_path(endpoint("p1").name)) is not None


def test_conflict_helper_really_conflicts(backend: EtcdBackend) -> None:
    backend.put("/k", b"v")
    kv = backend.get("/k")
    assert kv is not None
    with pytest.raises(RevisionConflict):
        ConflictOnce(backend).update("/k", b"w", kv.mod_revision)
