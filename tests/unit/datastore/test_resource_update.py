"""ResourceClient.update / update_or_create: the one read-modify-CAS loop, in memory."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from calico.datastore.api import KeepsChanging
from calico.datastore.client import (
    BuiltinResource,
    ResourceClient,
    ResourceConflict,
    ResourceNotFound,
)
from calico.datastore.memory import MemoryBackend
from calico.model.base import ObjectMeta
from calico.model.errors import ResourceError
from calico.model.keys import ResourceKey
from calico.model.network import IPPool, IPPoolSpec
from calico.model.policy import DEFAULT_ALLOW_PROFILE, Profile

NOW = "2026-01-01T00:00:00Z"


@pytest.fixture
def client() -> ResourceClient:
    return ResourceClient(MemoryBackend(), now=lambda: NOW)


def pool(name: str = "p1") -> IPPool:
    return IPPool(metadata=ObjectMeta(name=name), spec=IPPoolSpec(cidr="198.19.0.0/16"))


def set_label(key: str, value: str) -> Callable[[IPPool | None], IPPool]:
    def mutate(current: IPPool | None) -> IPPool:
        resource = current or pool()
        resource.metadata.labels = {**(resource.metadata.labels or {}), key: value}
        return resource

    return mutate


def test_update_writes_a_change_once_and_an_unchanged_resource_never(
    client: ResourceClient,
) -> None:
    created = client.create(pool())
    result = client.update(IPPool, "p1", None, set_label("env", "prod"))
    assert result.changed
    stored = client.get(IPPool, "p1")
    assert stored == result.resource
    assert stored.metadata.labels == {"env": "prod"}
    assert stored.metadata.uid == created.metadata.uid
    assert stored.metadata.creationTimestamp == NOW
    assert int(stored.metadata.resourceVersion or 0) > int(created.metadata.resourceVersion or 0)

    again = client.update(IPPool, "p1", None, set_label("env", "prod"))
    assert not again.changed
    assert client.get(IPPool, "p1").metadata.resourceVersion == stored.metadata.resourceVersion


def test_update_of_an_absent_resource_is_not_found_and_update_or_create_creates(
    client: ResourceClient,
) -> None:
    calls: list[IPPool | None] = []

    def mutate(current: IPPool | None) -> IPPool:
        calls.append(current)
        return set_label("env", "prod")(current)

    with pytest.raises(ResourceNotFound, match='IPPool "p1" does not exist'):
        client.update(IPPool, "p1", None, mutate)
    assert calls == []
    created = client.update_or_create(IPPool, "p1", None, mutate)
    assert calls == [None] and created.changed
    assert created.resource.metadata.uid and created.resource.metadata.creationTimestamp == NOW
    assert client.get(IPPool, "p1").metadata.labels == {"env": "prod"}


def test_a_concurrent_write_is_reread_and_kept(client: ResourceClient) -> None:
    client.create(pool())
    other = ResourceClient(client.backend)
    seen: list[dict[str, str] | None] = []

    def mutate(current: IPPool) -> IPPool:
        seen.append(current.metadata.labels)
        if len(seen) == 1:  # another writer gets in between our read and our write
            other.update(IPPool, "p1", None, set_label("owner", "other"))
        return set_label("env", "prod")(current)

    result = client.update(IPPool, "p1", None, mutate)
    assert seen == [None, {"owner": "other"}]
    assert result.resource.metadata.labels == {"owner": "other", "env": "prod"}
    assert client.get(IPPool, "p1").metadata.labels == {"owner": "other", "env": "prod"}


def test_endless_races_give_up_after_the_attempts(client: ResourceClient) -> None:
    client.create(pool())
    other = ResourceClient(client.backend)
    calls = 0

    def mutate(current: IPPool) -> IPPool:
        nonlocal calls
        calls += 1
        other.update(IPPool, "p1", None, set_label("n", str(calls)))
        return set_label("env", "prod")(current)

    with pytest.raises(KeepsChanging, match='IPPool "p1" kept changing; gave up after 3 attempts'):
        client.update(IPPool, "p1", None, mutate, attempts=3)
    assert calls == 3
    assert client.get(IPPool, "p1").metadata.labels == {"n": "3"}


def test_what_mutate_raises_ends_the_update_unretried(client: ResourceClient) -> None:
    client.create(pool())
    calls = 0

    def refuse(current: IPPool) -> IPPool:
        nonlocal calls
        calls += 1
        raise ResourceConflict(ResourceKey(IPPool, "p1"), "1")

    with pytest.raises(ResourceConflict):
        client.update(IPPool, "p1", None, refuse)
    assert calls == 1


def test_mutate_may_not_rename_and_builtins_stay_refused(client: ResourceClient) -> None:
    client.create(pool())
    with pytest.raises(ValueError, match='updating IPPool "p1" produced IPPool "p2"'):
        client.update(IPPool, "p1", None, lambda _: pool("p2"))
    client.ensure_initialized()
    with pytest.raises(BuiltinResource, match="cannot be modified"):
        client.update(Profile, DEFAULT_ALLOW_PROFILE, None, lambda p: p)


def test_garbage_is_an_error_unless_asked_to_replace_it(client: ResourceClient) -> None:
    path = ResourceKey(IPPool, "p1").path
    client.backend.put(path, b"{not json")
    with pytest.raises(ResourceError, match="invalid JSON"):
        client.update(IPPool, "p1", None, set_label("env", "prod"))
    with pytest.raises(ResourceError, match="invalid JSON"):
        client.update_or_create(IPPool, "p1", None, set_label("env", "prod"))
    replaced = client.update_or_create(
        IPPool, "p1", None, set_label("env", "prod"), replace_invalid=True
    )
    assert replaced.changed
    assert client.get(IPPool, "p1").metadata.labels == {"env": "prod"}


def test_apply_pins_a_given_version_and_rewrites_nothing_unchanged(
    client: ResourceClient,
) -> None:
    first = client.apply(pool())
    assert client.apply(pool()).metadata.resourceVersion == first.metadata.resourceVersion
    changed = client.update(IPPool, "p1", None, set_label("env", "prod")).resource
    stale = pool()
    stale.metadata.resourceVersion = first.metadata.resourceVersion
    with pytest.raises(ResourceConflict, match="out of date"):
        client.apply(stale)
    stale.metadata.resourceVersion = changed.metadata.resourceVersion
    assert client.apply(stale).metadata.labels is None
