"""What the Neutron driver writes to etcd: endpoints, SG policies, subnets, cluster config.

Callers hand over finished v3 resources and plain dicts (no neutron types here). Every write
is compare-and-swap on the revision just read, retried a bounded number of times when
someone else wrote in between (`ResourceClient.update_or_create`, `retry_races`), and skipped
when etcd already holds the same content, so repeated calls and resyncs cost no revisions
(and wake no watchers) when nothing changed.

`resync` makes etcd match a full snapshot from the Neutron DB, touching only what the driver
owns: WorkloadEndpoints with orchestrator `openstack` in the region's namespace, NetworkPolicies
named `ossg.default.*` in that namespace and the region's subnet keys. Garbage (bad JSON, an
invalid resource) under those prefixes is replaced or deleted with a log line, never fatal.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from calico.datastore.api import (
    Backend,
    KeyNotFound,
    KeyValue,
    Raced,
    RevisionConflict,
    cas_write,
    retry_races,
)
from calico.datastore.client import UPDATE_ATTEMPTS, ResourceClient, decode
from calico.datastore.etcd_gateway import OutcomeUnknown
from calico.model.base import Resource
from calico.model.codec import parse_resource
from calico.model.endpoints import WorkloadEndpoint
from calico.model.errors import ResourceError
from calico.model.felixconfig import FelixConfiguration
from calico.model.keys import ResourceKey, kind_prefix
from calico.model.network import ClusterInformation
from calico.model.policy import NetworkPolicy
from calico.model.status_keys import region_string
from calico.openstack import keys

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource)

KIND_ENDPOINT = WorkloadEndpoint.KIND
KIND_POLICY = NetworkPolicy.KIND
KIND_SUBNET = "subnet"
CLUSTER_TYPE = "openstack"


@dataclass
class ResyncReport:
    """What a resync changed, by kind ("WorkloadEndpoint"/"NetworkPolicy"/"subnet").

    `skipped` lists entries a resync left alone because they changed after it
    listed them (a concurrent write by the live driver wins; the next resync judges again).
    """

    created: dict[str, list[str]] = field(default_factory=dict)
    updated: dict[str, list[str]] = field(default_factory=dict)
    deleted: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def add(self, bucket: dict[str, list[str]], kind: str, name: str) -> None:
        bucket.setdefault(kind, []).append(name)

    def changes(self) -> int:
        return sum(len(v) for b in (self.created, self.updated, self.deleted) for v in b.values())

    def summary(self) -> str:
        parts = []
        for verb, bucket in (
            ("created", self.created),
            ("updated", self.updated),
            ("deleted", self.deleted),
            ("skipped", self.skipped),
        ):
            counts = [f"{len(names)} {kind}" for kind, names in sorted(bucket.items()) if names]
            if counts:
                parts.append(f"{verb} {', '.join(counts)}")
        return "resync: " + ("; ".join(parts) if parts else "no changes")

    def to_json(self) -> dict[str, Any]:
        return {
            "created": {k: sorted(v) for k, v in self.created.items()},
            "updated": {k: sorted(v) for k, v in self.updated.items()},
            "deleted": {k: sorted(v) for k, v in self.deleted.items()},
            "skipped": {k: sorted(v) for k, v in self.skipped.items()},
            "changes": self.changes(),
            "summary": self.summary(),
        }


def _json_bytes(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def _parse_json(value: bytes) -> Any:
    """The JSON in value, or None (callers treat None as garbage)."""
    try:
        return json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _add_to_csv(value: str | None, item: str) -> str:
    """A comma-separated list with item in it (unset -> just item)."""
    if not value:
        return item
    parts = [p.strip() for p in value.split(",")]
    return value if item in parts else f"{value},{item}"


# What resync makes etcd match: endpoints, SG policies and subnet id -> DHCP data.
Snapshot = tuple[
    Iterable[WorkloadEndpoint], Iterable[NetworkPolicy], Mapping[str, Mapping[str, Any]]
]


class OpenStackStore:
    def __init__(self, backend: Backend, region: str | None) -> None:
        self.backend = backend
        self.region = region
        self.region_string = region_string(region)
        self.namespace = keys.endpoint_namespace(region)
        self.client = ResourceClient(backend)

    # -- endpoints and policies -------------------------------------------------------------

    def write_endpoint(self, endpoint: WorkloadEndpoint) -> bool:
        """Create or CAS-update; False when etcd already holds the same content."""
        return self._write_resource(self._check_namespace(endpoint))

    def delete_endpoint(self, name: str) -> bool:
        return self._delete_key(ResourceKey(WorkloadEndpoint, name, self.namespace).path)

    def write_policy(self, policy: NetworkPolicy) -> bool:
        return self._write_resource(self._check_namespace(policy))

    def delete_policy(self, name: str) -> bool:
        return self._delete_key(ResourceKey(NetworkPolicy, name, self.namespace).path)

    def _check_namespace(self, resource: R) -> R:
        # A namespace mismatch is a driver bug; writing elsewhere would escape resync's scope.
        if resource.namespace != self.namespace:
            raise ValueError(
                f"{resource.display_name()} is not in this region's namespace {self.namespace!r}"
            )
        return resource

    def _write_resource(self, resource: Resource) -> bool:
        """Make the key hold resource (replacing garbage); False if it already did."""
        return self.client.update_or_create(
            type(resource),
            resource.name,
            resource.namespace,
            lambda _: resource,
            replace_invalid=True,
        ).changed

    def _attempt_resource(self, resource: Resource, read: KeyValue | None) -> bool:
        """One CAS write of resource over read (what the key held); Raced if it changed since."""
        return self.client.update_once(
            type(resource),
            resource.name,
            resource.namespace,
            read,
            lambda _: resource,
            create=True,
            replace_invalid=True,
        ).changed

    def _delete_key(self, path: str) -> bool:
        try:
            self._delete(path)
        except KeyNotFound:
            return False
        return True

    def _delete(self, key: str, mod_revision: int | None = None) -> None:
        """backend.delete, completed after an ambiguous failure (a member died mid-request and
        may have applied it; etcd's client does not resend deletes, see datastore/DESIGN.md):
        the key read back gone is the outcome wanted; still there, it is deleted once more,
        guarded by the revision read (and by `mod_revision`'s guard, if one was given)."""
        try:
            self.backend.delete(key, mod_revision)
        except OutcomeUnknown as exc:
            log.warning("%s; reading %s back to finish the delete", exc, key)
            kv = self.backend.get(key)
            if kv is None:
                return
            if mod_revision is not None and kv.mod_revision != mod_revision:
                raise RevisionConflict(
                    f"{key}: expected mod_revision {mod_revision}, found {kv.mod_revision}"
                ) from exc
            self.backend.delete(key, kv.mod_revision)

    # -- subnets ----------------------------------------------------------------------------

    def write_subnet(self, subnet_id: str, data: Mapping[str, Any]) -> bool:
        return self._write_json(keys.subnet_key(self.region_string, subnet_id), data)

    def delete_subnet(self, subnet_id: str) -> bool:
        return self._delete_key(keys.subnet_key(self.region_string, subnet_id))

    def _write_json(self, key: str, data: Mapping[str, Any]) -> bool:
        return retry_races(
            key, lambda: self._attempt_json(key, data, self.backend.get(key)), UPDATE_ATTEMPTS
        )

    def _attempt_json(self, key: str, data: Mapping[str, Any], kv: KeyValue | None) -> bool:
        wanted = dict(data)
        if kv is not None:
            existing = _parse_json(kv.value)
            if existing == wanted:
                return False
            if not isinstance(existing, dict):
                log.warning("replacing invalid JSON at %s: %r", key, kv.value[:200])
        cas_write(self.backend, key, kv, _json_bytes(wanted))
        return True

    # -- resync -----------------------------------------------------------------------------

    def resync(self, snapshot: Callable[[], Snapshot]) -> ResyncReport:
        """Create missing, update changed and delete extra endpoints, SG policies, subnets.

        etcd is listed before `snapshot()` reads Neutron's DB, and every resync write is one
        CAS on the listed revision: anything the live driver wrote after the listing comes
        from a DB state at least as new as the snapshot, so it wins (reported as skipped)
        instead of being overwritten or deleted with older data.
        """
        listed = {
            WorkloadEndpoint.KIND: self.backend.list(kind_prefix(WorkloadEndpoint, self.namespace)),
            NetworkPolicy.KIND: self.backend.list(kind_prefix(NetworkPolicy, self.namespace)),
            KIND_SUBNET: self.backend.list(keys.subnet_prefix(self.region_string)),
        }
        endpoints, policies, subnets = snapshot()
        report = ResyncReport()
        for kind, wanted in (
            (WorkloadEndpoint, {e.name: self._check_namespace(e) for e in endpoints}),
            (NetworkPolicy, {p.name: self._check_namespace(p) for p in policies}),
        ):
            self._resync_resources(report, kind, wanted, listed[kind.KIND].items)
        self._resync_subnets(report, subnets, listed[KIND_SUBNET].items)
        log.info("%s", report.summary())
        return report

    def _owned(self, kind: type[Resource]) -> Callable[[str, Resource | None], bool]:
        """Whether resync may delete an extra entry (resource None = garbage)."""
        if kind is WorkloadEndpoint:
            # Garbage in the region's own namespace can only be ours.
            return lambda _name, r: (
                r is None
                or (isinstance(r, WorkloadEndpoint) and r.spec.orchestrator == keys.ORCHESTRATOR)
            )
        return lambda name, _r: name.startswith(keys.SG_POLICY_PREFIX)

    def _resync_resources(
        self,
        report: ResyncReport,
        kind: type[Resource],
        wanted: Mapping[str, Resource],
        items: Iterable[KeyValue],
    ) -> None:
        prefix = kind_prefix(kind, self.namespace)
        owned = self._owned(kind)
        listed: dict[str, KeyValue] = {}
        for kv in items:
            name = kv.key[len(prefix) :]
            if name in wanted:
                listed[name] = kv
                continue
            try:
                existing: Resource | None = decode(kv)
            except ResourceError as exc:
                existing = None
                if not owned(name, None):
                    continue
                log.warning("resync: deleting invalid datastore entry: %s", exc)
            if owned(name, existing):
                self._delete_extra(report, kind.KIND, name, kv)
        for name, resource in wanted.items():
            kv_or_none = listed.get(name)
            self._resync_write(
                report,
                kind.KIND,
                name,
                kv_or_none,
                partial(self._attempt_resource, resource, kv_or_none),
            )

    def _resync_subnets(
        self,
        report: ResyncReport,
        subnets: Mapping[str, Mapping[str, Any]],
        items: Iterable[KeyValue],
    ) -> None:
        prefix = keys.subnet_prefix(self.region_string)
        listed: dict[str, KeyValue] = {}
        for kv in items:
            subnet_id = kv.key[len(prefix) :]
            if subnet_id in subnets:
                listed[subnet_id] = kv
            else:
                self._delete_extra(report, KIND_SUBNET, subnet_id, kv)
        for subnet_id, data in subnets.items():
            kv_or_none = listed.get(subnet_id)
            key = keys.subnet_key(self.region_string, subnet_id)
            self._resync_write(
                report,
                KIND_SUBNET,
                subnet_id,
                kv_or_none,
                partial(self._attempt_json, key, data, kv_or_none),
            )

    def _resync_write(
        self,
        report: ResyncReport,
        kind: str,
        name: str,
        listed: KeyValue | None,
        attempt: Callable[[], bool],
    ) -> None:
        try:
            changed = attempt()
        except Raced:
            log.info("resync: %s %s changed since listing; leaving the newer write", kind, name)
            report.add(report.skipped, kind, name)
            return
        if changed:
            report.add(report.updated if listed else report.created, kind, name)

    def _delete_extra(self, report: ResyncReport, kind: str, name: str, kv: KeyValue) -> None:
        try:
            self._delete(kv.key, kv.mod_revision)
        except KeyNotFound:
            return  # someone else deleted it: the outcome we wanted
        except RevisionConflict:
            log.info("resync: %s %s changed since listing; not deleting it", kind, name)
            report.add(report.skipped, kind, name)
            return
        report.add(report.deleted, kind, name)

    # -- cluster-wide config ----------------------------------------------------------------

    def ensure_cluster_config(self) -> None:
        """As networking-calico: Felix must treat `tap*` as workload interfaces and report
        endpoint status; ClusterInformation says the datastore is ready and the cluster runs
        OpenStack. Every other field is kept; each write is CAS."""
        self.client.ensure_initialized()  # default tier etc., when calicoctl never ran

        def felix(spec: dict[str, Any]) -> None:
            spec["interfacePrefix"] = _add_to_csv(spec.get("interfacePrefix"), "tap")
            spec["endpointReportingEnabled"] = True

        def cluster(spec: dict[str, Any]) -> None:
            spec["clusterType"] = _add_to_csv(spec.get("clusterType"), CLUSTER_TYPE)
            spec["datastoreReady"] = True
            spec.setdefault("clusterGUID", uuid.uuid4().hex)

        self._edit_global(FelixConfiguration, "default", felix)
        self._edit_global(ClusterInformation, "default", cluster)

    def _edit_global(
        self, kind: type[Resource], name: str, edit: Callable[[dict[str, Any]], None]
    ) -> None:
        """Edit the spec of what is stored (created if absent; garbage is replaced)."""

        def edited(current: Resource | None) -> Resource:
            fresh: dict[str, Any] = {
                "apiVersion": "projectcalico.org/v3",
                "kind": kind.KIND,
                "metadata": {"name": name},
            }
            data = current.to_dict() if current else fresh
            spec = dict(data.get("spec", {}))
            edit(spec)
            return parse_resource({**data, "spec": spec})

        self.client.update_or_create(kind, name, None, edited, replace_invalid=True)
