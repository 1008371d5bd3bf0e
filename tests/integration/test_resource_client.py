"""The typed resource client, against the in-memory backend and a real etcd alike."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from calico.datastore.api import Backend
from calico.datastore.client import (
    BuiltinResource,
    ResourceClient,
    ResourceConflict,
    ResourceExists,
    ResourceNotFound,
    decode,
)
from calico.datastore.etcd import EtcdBackend
from calico.datastore.memory import MemoryBackend
from calico.model import parse_resource
from calico.model.base import Resource
from calico.model.keys import ResourceKey
from calico.model.network import ClusterInformation, IPPool
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy, Profile, Tier
from calico.testing.etcd_server import EtcdServer


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    server: EtcdServer = request.getfixturevalue("etcd_server")
    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": server.endpoint})
    yield backend
    backend.close()


@pytest.fixture
def client(store: Backend) -> ResourceClient:
    return ResourceClient(store, now=lambda: "2026-01-01T00:00:00Z")


def pool(name: str = "p1", cidr: str = "198.19.0.0/16", **spec: object) -> IPPool:
    resource = parse_resource(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, **spec},
        }
    )
    assert isinstance(resource, IPPool)
    return resource


def policy(name: str, namespace: str, selector: str = "all()") -> Resource:
    return parse_resource(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": selector},
        }
    )


def test_create_get_list_delete(client: ResourceClient) -> None:
    created = client.create(pool())
    assert created.metadata.resourceVersion and created.metadata.uid
    assert created.metadata.creationTimestamp == "2026-01-01T00:00:00Z"
    fetched = client.get(IPPool, "p1")
    assert fetched == created
    assert [r.name for r in client.list(IPPool).items] == ["p1"]
    deleted = client.delete(IPPool, "p1")
    assert deleted is not None and deleted.name == "p1"
    with pytest.raises(ResourceNotFound, match='IPPool "p1" does not exist'):
        client.get(IPPool, "p1")
    with pytest.raises(ResourceNotFound):
        client.delete(IPPool, "p1")


def test_stored_json_has_no_resource_version(client: ResourceClient, store: Backend) -> None:
    client.create(pool())
    kv = store.get(ResourceKey(IPPool, "p1").path)
    assert kv is not None
    data = json.loads(kv.value)
    assert "resourceVersion" not in data["metadata"]
    assert data["spec"]["blockSize"] == 26
    assert decode(kv).metadata.resourceVersion == str(kv.mod_revision)


def test_create_twice_conflicts(client: ResourceClient) -> None:
    client.create(pool())
    with pytest.raises(ResourceExists, match='IPPool "p1" already exists'):
        client.create(pool())


def test_replace_is_compare_and_swap(client: ResourceClient) -> None:
    first = client.create(pool())
    stale_version = first.metadata.resourceVersion
    updated = first.model_copy(deep=True)
    updated.spec.natOutgoing = True
    second = client.replace(updated)
    assert second.metadata.uid == first.metadata.uid
    assert int(second.metadata.resourceVersion or 0) > int(stale_version or 0)
    stale = first.model_copy(deep=True)
    stale.spec.disabled = True
    with pytest.raises(ResourceConflict, match="out of date"):
        client.replace(stale)
    assert client.get(IPPool, "p1").spec.natOutgoing is True
    with pytest.raises(ResourceNotFound):
        client.replace(pool("missing", "198.18.0.0/24"))


def test_replace_without_version_uses_current(client: ResourceClient) -> None:
    client.create(pool())
    replaced = client.replace(pool(natOutgoing=True))
    assert replaced.spec.natOutgoing is True


def test_apply_creates_then_updates(client: ResourceClient) -> None:
    client.apply(pool())
    client.apply(pool(natOutgoing=True))
    assert client.get(IPPool, "p1").spec.natOutgoing is True


def test_delete_with_stale_version_conflicts(client: ResourceClient) -> None:
    first = client.create(pool())
    client.replace(pool(natOutgoing=True))
    with pytest.raises(ResourceConflict):
        client.delete(IPPool, "p1", resource_version=first.metadata.resourceVersion)
    assert client.get(IPPool, "p1")


def test_namespaced_listing(client: ResourceClient) -> None:
    client.create(policy("a", "ns1"))
    client.create(policy("b", "ns2"))
    client.create(policy("a", "ns2"))
    assert sorted((r.namespace, r.name) for r in client.list(NetworkPolicy).items) == [
        ("ns1", "a"),
        ("ns2", "a"),
        ("ns2", "b"),
    ]
    assert [r.name for r in client.list(NetworkPolicy, "ns1").items] == ["a"]
    # A namespace whose name is a prefix of another must not leak into its listing.
    client.create(policy("c", "ns"))
    assert [r.name for r in client.list(NetworkPolicy, "ns").items] == ["c"]


def test_builtins(client: ResourceClient) -> None:
    client.ensure_initialized()
    client.ensure_initialized()  # idempotent
    assert client.get(Tier, "default").spec.order == 1_000_000
    allow = client.get(Profile, "projectcalico-default-allow")
    assert allow.spec.ingress is not None and allow.spec.ingress[0].action == "Allow"
    assert client.get(ClusterInformation, "default").spec.datastoreReady is True
    with pytest.raises(BuiltinResource):
        client.delete(Tier, "default")
    with pytest.raises(BuiltinResource):
        client.delete(Profile, "projectcalico-default-allow")
    with pytest.raises(BuiltinResource):
        client.replace(allow)


def test_garbage_is_skipped_and_reported(client: ResourceClient, store: Backend) -> None:
    client.create(pool("good"))
    prefix = "/calico/resources/v3/projectcalico.org/ippools/"
    store.put(prefix + "not-json", b"{nope")
    store.put(
        prefix + "wrong-kind",
        json.dumps(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "Tier",
                "metadata": {"name": "wrong-kind"},
            }
        ).encode(),
    )
    store.put(
        prefix + "invalid",
        json.dumps(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": {"name": "invalid"},
                "spec": {"cidr": "nope"},
            }
        ).encode(),
    )
    store.put(prefix + "renamed", json.dumps(pool("other").to_dict()).encode())
    store.put(prefix + "a/b", b"{}")
    listing = client.list(IPPool)
    assert [r.name for r in listing.items] == ["good"]
    reasons = {s.key.removeprefix(prefix): s.reason for s in listing.skipped}
    assert set(reasons) == {"not-json", "wrong-kind", "invalid", "renamed", "a/b"}
    assert "invalid JSON" in reasons["not-json"]
    assert "spec.cidr" in reasons["invalid"]
    assert "not a known resource key" in reasons["a/b"]
    # Garbage can still be deleted by name.
    assert client.delete(IPPool, "not-json") is None


def test_global_policy_round_trip(client: ResourceClient) -> None:
    gnp = parse_resource(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "security.p"},
            "spec": {
                "tier": "security",
                "order": 5,
                "ingress": [
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "destination": {"ports": [80, "1000:2000"]},
                    }
                ],
            },
        }
    )
    stored = client.create(gnp)
    fetched = client.get(GlobalNetworkPolicy, "security.p")
    assert fetched == stored
    assert fetched.to_dict()["spec"]["ingress"][0]["destination"]["ports"] == [80, "1000:2000"]
