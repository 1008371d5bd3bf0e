"""Typed resource CRUD over a `Backend`: what calicoctl, plugins and agents use.

Resources are stored as their JSON (defaults applied, resourceVersion left out: it is the
etcd mod_revision, filled in on read). Writes are validated first; updates are
compare-and-swap. Readers skip garbage (bad JSON, a wrong kind, a name that does not match
its key) and report it instead of failing, so one corrupt key cannot hide the rest.

`update`/`update_or_create` are the one read-modify-write loop for resources: read, let the
caller's function produce the new resource, compare-and-swap it on the revision read, and
re-read and try again (a bounded number of times) when another writer got in between. A
mutation that changes no content writes nothing, so repeated calls cost no revisions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from calico import __version__
from calico.datastore.api import (
    Backend,
    DatastoreError,
    KeyExists,
    KeyNotFound,
    KeyValue,
    RevisionConflict,
    cas_write,
    retry_races,
)
from calico.model.base import ObjectMeta, Resource
from calico.model.codec import describe_raw, parse_as
from calico.model.errors import ResourceError
from calico.model.keys import ResourceKey, key_of, kind_prefix, parse_key
from calico.model.network import ClusterInformation, ClusterInformationSpec
from calico.model.policy import (
    DEFAULT_ALLOW_PROFILE,
    DEFAULT_TIER,
    Profile,
    ProfileSpec,
    Tier,
    TierSpec,
)
from calico.model.rules import Rule

log = logging.getLogger(__name__)
R = TypeVar("R", bound=Resource)
UPDATE_ATTEMPTS = 5
# Metadata the store fills in: never a reason to rewrite.
_STORED_META = ("resourceVersion", "uid", "creationTimestamp")


class ResourceNotFound(KeyNotFound):
    def __init__(self, key: ResourceKey) -> None:
        super().__init__(f"{key} does not exist")


class ResourceExists(KeyExists):
    def __init__(self, key: ResourceKey) -> None:
        super().__init__(f"{key} already exists")


class ResourceConflict(RevisionConflict):
    def __init__(self, key: ResourceKey, version: str) -> None:
        super().__init__(
            f"{key} was modified by someone else (resourceVersion {version} is out of date);"
            " get it again and retry"
        )


class BuiltinResource(DatastoreError):
    """An attempt to delete or rewrite something Calico always provides."""


@dataclass(frozen=True, slots=True)
class Skipped:
    key: str
    reason: str


@dataclass(slots=True)
class ResourceList:
    items: list[Resource] = field(default_factory=list)
    revision: int = 0
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Updated(Generic[R]):
    """What an update left stored; changed is False when it wrote nothing."""

    resource: R
    changed: bool


def content(resource: Resource) -> dict[str, Any]:
    """A resource's data without the metadata the store fills in."""
    data = resource.to_dict()
    for name in _STORED_META:
        data["metadata"].pop(name, None)
    return data


def decode(kv: KeyValue, kind: type[Resource] | None = None) -> Resource:
    """Decode a stored resource (of `kind` if given); ResourceError if the key or value is not
    a valid resource."""
    key = parse_key(kv.key, kind)
    if key is None:
        raise ResourceError(kv.key, [("", "not a known resource key")])
    return decode_at(key, kv)


def decode_at(key: ResourceKey, kv: KeyValue) -> Resource:
    """decode() of a value whose key the caller has parsed already (a syncer's)."""
    try:
        data = json.loads(kv.value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResourceError(kv.key, [("", f"invalid JSON: {exc}")]) from None
    if not isinstance(data, dict):
        raise ResourceError(kv.key, [("", "value is not a JSON object")])
    if data.get("kind") != key.kind.KIND:
        raise ResourceError(kv.key, [("", f"value is a {describe_raw(data)}, not {key}")])
    resource = parse_as(key.kind, data)
    if key_of(resource).path != kv.key:
        raise ResourceError(kv.key, [("", f"value is a {resource.display_name()}, not {key}")])
    resource.metadata.resourceVersion = str(kv.mod_revision)
    return resource


def encode(resource: Resource) -> bytes:
    data = resource.to_dict()
    data["metadata"].pop("resourceVersion", None)
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def builtin_resources() -> list[Resource]:
    """What Calico always has: the default tier, the allow-all profile, ClusterInformation."""
    return [
        Tier(metadata=ObjectMeta(name=DEFAULT_TIER), spec=TierSpec()),
        Profile(
            metadata=ObjectMeta(name=DEFAULT_ALLOW_PROFILE),
            spec=ProfileSpec(ingress=[Rule(action="Allow")], egress=[Rule(action="Allow")]),
        ),
        ClusterInformation(
            metadata=ObjectMeta(name="default"),
            spec=ClusterInformationSpec(
                clusterGUID=uuid.uuid4().hex,
                clusterType="calico-py",
                calicoVersion=f"calico-py-{__version__}",
                datastoreReady=True,
            ),
        ),
    ]


def _is_builtin(key: ResourceKey) -> bool:
    return (key.kind is Tier and key.name == DEFAULT_TIER) or (
        key.kind is Profile and key.name == DEFAULT_ALLOW_PROFILE
    )


def _refuse_rewrite_of_builtin(key: ResourceKey) -> None:
    if key.kind is Profile and key.name == DEFAULT_ALLOW_PROFILE:
        raise BuiltinResource(f"{key} is built in and cannot be modified")


class ResourceClient:
    def __init__(self, backend: Backend, now: Callable[[], str] = _now) -> None:
        self.backend = backend
        self._now = now

    def ensure_initialized(self) -> None:
        """Create the built-in resources that are missing (idempotent, race-safe)."""
        for resource in builtin_resources():
            with contextlib.suppress(ResourceExists):
                self.create(resource)

    def get(self, kind: type[R], name: str, namespace: str | None = None) -> R:
        key = ResourceKey(kind, name, namespace)
        kv = self.backend.get(key.path)
        if kv is None:
            raise ResourceNotFound(key)
        resource = decode(kv, kind)
        assert isinstance(resource, kind)
        return resource

    def list(
        self, kind: type[Resource], namespace: str | None = None, *, log_skipped: bool = True
    ) -> ResourceList:
        """`log_skipped=False`: a watch that follows reports the invalid entries (once)."""
        listing = self.backend.list(kind_prefix(kind, namespace))
        result = ResourceList(revision=listing.revision)
        for kv in listing.items:
            try:
                result.items.append(decode(kv, kind))
            except ResourceError as exc:
                if log_skipped:
                    log.warning("skipping invalid datastore entry %s", exc)
                result.skipped.append(Skipped(kv.key, str(exc)))
        return result

    def create(self, resource: R) -> R:
        stored = resource.model_copy(deep=True)
        stored.metadata.uid = stored.metadata.uid or str(uuid.uuid4())
        stored.metadata.creationTimestamp = stored.metadata.creationTimestamp or self._now()
        key = key_of(stored)
        try:
            revision = self.backend.create(key.path, encode(stored))
        except KeyExists:
            raise ResourceExists(key) from None
        stored.metadata.resourceVersion = str(revision)
        return stored

    def replace(self, resource: R) -> R:
        """Update an existing resource; CAS on its resourceVersion when it carries one."""
        key = key_of(resource)
        _refuse_rewrite_of_builtin(key)
        current = self.get(type(resource), key.name, key.namespace)
        version = resource.metadata.resourceVersion or current.metadata.resourceVersion or "0"
        stored = resource.model_copy(deep=True)
        stored.metadata.uid = current.metadata.uid
        stored.metadata.creationTimestamp = current.metadata.creationTimestamp
        try:
            revision = self.backend.update(key.path, encode(stored), int(version))
        except KeyNotFound:
            raise ResourceNotFound(key) from None
        except RevisionConflict:
            raise ResourceConflict(key, version) from None
        stored.metadata.resourceVersion = str(revision)
        return stored

    def apply(self, resource: R) -> R:
        """Create or replace. A resource that carries a resourceVersion replaces only that
        version (ResourceConflict otherwise); one without is re-read and retried on a race."""
        key = key_of(resource)
        pinned = resource.metadata.resourceVersion

        def replacing(current: R | None) -> R:
            if current is not None and pinned and pinned != current.metadata.resourceVersion:
                raise ResourceConflict(key, pinned)
            return resource

        return self.update_or_create(type(resource), key.name, key.namespace, replacing).resource

    def update(
        self,
        kind: type[R],
        name: str,
        namespace: str | None,
        mutate: Callable[[R], R],
        *,
        attempts: int = UPDATE_ATTEMPTS,
    ) -> Updated[R]:
        """Read, mutate and compare-and-swap the resource, retrying when someone else wrote
        in between. `mutate` gets a copy of what is stored (it may edit it) and returns what
        to store; the same content writes nothing. ResourceNotFound if absent, KeepsChanging
        after `attempts` lost races; anything `mutate` raises ends the update."""

        def edit(current: R | None) -> R:
            assert current is not None  # update_once raised ResourceNotFound instead
            return mutate(current)

        return self._retried(kind, name, namespace, edit, create=False, attempts=attempts)

    def update_or_create(
        self,
        kind: type[R],
        name: str,
        namespace: str | None,
        mutate: Callable[[R | None], R],
        *,
        replace_invalid: bool = False,
        attempts: int = UPDATE_ATTEMPTS,
    ) -> Updated[R]:
        """As `update`, but an absent resource is created from `mutate(None)`; with
        replace_invalid, so is one whose stored value is not a valid resource."""
        return self._retried(
            kind,
            name,
            namespace,
            mutate,
            create=True,
            replace_invalid=replace_invalid,
            attempts=attempts,
        )

    def update_once(
        self,
        kind: type[R],
        name: str,
        namespace: str | None,
        read: KeyValue | None,
        mutate: Callable[[R | None], R],
        *,
        create: bool = False,
        replace_invalid: bool = False,
    ) -> Updated[R]:
        """One attempt of `update`/`update_or_create` over `read`, what the key held when the
        caller read it (None: absent). Raises Raced if the key changed since."""
        key = ResourceKey(kind, name, namespace)
        current: R | None = None
        if read is None and not create:
            raise ResourceNotFound(key)
        if read is not None:
            try:
                decoded = decode(read, kind)
            except ResourceError as exc:
                if not replace_invalid:
                    raise
                log.warning("replacing invalid datastore entry: %s", exc)
            else:
                assert isinstance(decoded, kind)
                current = decoded
                _refuse_rewrite_of_builtin(key)
        wanted = mutate(current.model_copy(deep=True) if current else None)
        if key_of(wanted) != key:
            raise ValueError(f"updating {key} produced {key_of(wanted)}")
        if current is not None and content(wanted) == content(current):
            return Updated(current, False)
        stored = wanted.model_copy(deep=True)
        if current is not None:
            stored.metadata.uid = current.metadata.uid
            stored.metadata.creationTimestamp = current.metadata.creationTimestamp
        stored.metadata.uid = stored.metadata.uid or str(uuid.uuid4())
        stored.metadata.creationTimestamp = stored.metadata.creationTimestamp or self._now()
        revision = cas_write(self.backend, key.path, read, encode(stored))
        stored.metadata.resourceVersion = str(revision)
        return Updated(stored, True)

    def _retried(
        self,
        kind: type[R],
        name: str,
        namespace: str | None,
        mutate: Callable[[R | None], R],
        *,
        create: bool,
        replace_invalid: bool = False,
        attempts: int,
    ) -> Updated[R]:
        key = ResourceKey(kind, name, namespace)
        return retry_races(
            str(key),
            lambda: self.update_once(
                kind,
                name,
                namespace,
                self.backend.get(key.path),
                mutate,
                create=create,
                replace_invalid=replace_invalid,
            ),
            attempts,
        )

    def delete(
        self,
        kind: type[R],
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> Resource | None:
        """Delete; returns what was deleted (None if the stored value was garbage)."""
        key = ResourceKey(kind, name, namespace)
        if _is_builtin(key):
            raise BuiltinResource(f"{key} is built in and cannot be deleted")
        revision = int(resource_version) if resource_version else None
        try:
            kv = self.backend.delete(key.path, revision)
        except KeyNotFound:
            raise ResourceNotFound(key) from None
        except RevisionConflict:
            raise ResourceConflict(key, resource_version or "") from None
        try:
            return decode(kv, kind)
        except ResourceError:
            return None
