"""`Backend` over a real etcd v3 cluster through its JSON gateway (`/v3/...`).

Compare-and-swap is one etcd transaction per call, so a check and its write can never be split
by another writer: create compares create_revision == 0; update and delete compare the key's
existence and mod_revision, and read the key back in the failure branch of the same
transaction to tell KeyNotFound from RevisionConflict. Listings are paginated but pinned to the
revision of their first page, so a big prefix still reads as one consistent snapshot.
See `etcd_gateway` for failover/timeouts/TLS and `etcd_watch` for the watch stream.

Retries after an ambiguous failure (the request may have been applied; see DESIGN.md): create
and update are guarded transactions and are sent once more; a blind put, a delete, a lease grant
are not (a second copy could apply twice or misreport), and the caller gets `OutcomeUnknown`.
"""

from __future__ import annotations

import base64
import logging
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from calico.datastore.api import (
    DatastoreError,
    KeyExists,
    KeyNotFound,
    KeyValue,
    Listing,
    RevisionConflict,
    Watch,
)
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd_gateway import (
    Gateway,
    GatewayError,
    Json,
    OutcomeUnknown,
    Transport,
    b64,
    decode_kv,
    encode_key,
    key_range,
    to_int,
)

if TYPE_CHECKING:
    from calico.datastore.etcd_watch import EtcdWatch

_LIST_ATTEMPTS = 3
_log = logging.getLogger(__name__)


class EtcdBackend:
    """Thread-safe; one pooled HTTP client shared by all calls and watches (`transport`: see
    `etcd_gateway`; the default is the one that can watch)."""

    def __init__(
        self,
        config: EtcdConfig | None = None,
        *,
        page_size: int = 1000,
        transport: Transport | None = None,
    ) -> None:
        self._gateway = Gateway(config or EtcdConfig(), transport)
        self._page_size = page_size
        self._watches: weakref.WeakSet[EtcdWatch] = weakref.WeakSet()
        self._watches_lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> EtcdBackend:
        return cls(EtcdConfig.from_env(environ))

    def get(self, key: str) -> KeyValue | None:
        body = self._gateway.call("/v3/kv/range", {"key": b64(encode_key(key))})
        kvs = body.get("kvs", [])
        return decode_kv(kvs[0]) if kvs else None

    def list(self, prefix: str) -> Listing:
        """All keys under prefix at one revision; restarts if a compaction overtakes paging."""
        for _ in range(_LIST_ATTEMPTS):
            try:
                return self._list_once(prefix)
            except GatewayError as exc:
                if not exc.compacted:
                    raise
        raise DatastoreError(f"listing {prefix!r} kept being overtaken by compaction")

    def create(self, key: str, value: bytes, lease: int = 0) -> int:
        raw_key = b64(encode_key(key))
        compare = [{"target": "CREATE", "key": raw_key, "create_revision": 0, "result": "EQUAL"}]
        revision, _ = self._guarded_put(key, compare, value, lease)
        if not revision:
            raise KeyExists(key)
        return revision

    def update(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> int:
        raw_key = b64(encode_key(key))
        revision, body = self._guarded_put(key, _exists_at(raw_key, mod_revision), value, lease)
        if not revision:
            _raise_cas_failure(key, mod_revision, body)
        return revision

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        body = self._gateway.call(
            "/v3/kv/put", _put(b64(encode_key(key)), value, lease), idempotent=False
        )
        return _revision(body)

    def delete(self, key: str, mod_revision: int | None = None) -> KeyValue:
        raw_key = b64(encode_key(key))
        request = {"request_delete_range": {"key": raw_key, "prev_kv": True}}
        body = self._txn(_exists_at(raw_key, mod_revision), request)
        if not body.get("succeeded"):
            _raise_cas_failure(key, mod_revision, body)
        deleted = body["responses"][0]["response_delete_range"]
        return decode_kv(deleted["prev_kvs"][0])

    def grant_lease(self, ttl_seconds: int) -> int:
        body = self._gateway.call("/v3/lease/grant", {"TTL": ttl_seconds}, idempotent=False)
        return to_int(body, "ID")

    def keepalive(self, lease_id: int) -> int:
        body = self._gateway.call("/v3/lease/keepalive", {"ID": lease_id})
        ttl = to_int(body.get("result", {}), "TTL")
        if ttl <= 0:  # etcd answers an expired or unknown lease with TTL omitted (= 0)
            raise KeyNotFound(f"lease {lease_id:x} not found or expired")
        return ttl

    def revoke_lease(self, lease_id: int) -> None:
        self._gateway.call("/v3/lease/revoke", {"ID": lease_id})

    def watch(self, prefix: str, start_revision: int) -> Watch:
        from calico.datastore.etcd_watch import EtcdWatch

        watch = EtcdWatch(self._gateway, prefix, start_revision)
        with self._watches_lock:
            self._watches.add(watch)
        return watch

    def member_status(self) -> tuple[int, int]:
        """(the answering member's id, its leader's id): equal when it is the leader."""
        body = self._gateway.call("/v3/maintenance/status", {})
        return to_int(body.get("header", {}), "member_id"), to_int(body, "leader")

    def compact(self, revision: int) -> None:
        """Drop history before revision; compacting an already compacted revision is a no-op."""
        try:
            self._gateway.call("/v3/kv/compaction", {"revision": revision, "physical": True})
        except GatewayError as exc:
            if not exc.compacted:
                raise

    def close(self) -> None:
        """Close the HTTP client and end any watch still being iterated."""
        with self._watches_lock:
            watches = list(self._watches)
        for watch in watches:
            watch.close()
        self._gateway.close()

    def _list_once(self, prefix: str) -> Listing:
        start, end = key_range(prefix)
        items: list[KeyValue] = []
        revision = 0
        while True:
            request: Json = {"key": b64(start), "range_end": b64(end), "limit": self._page_size}
            if revision:
                request["revision"] = revision
            body = self._gateway.call("/v3/kv/range", request)
            revision = revision or _revision(body)
            kvs = body.get("kvs", [])
            items.extend(decode_kv(raw) for raw in kvs)
            if not body.get("more") or not kvs:
                return Listing(items=items, revision=revision)
            start = base64.b64decode(kvs[-1]["key"]) + b"\0"

    def _guarded_put(
        self, key: str, compare: Sequence[Json], value: bytes, lease: int
    ) -> tuple[int, Json]:
        """A put guarded by `compare`: (its revision, or 0 when the guard failed; the reply).

        Safe to send again after an ambiguous failure (the member died mid-request): had the
        first copy applied, the guard fails the second, which then reads the key; holding
        exactly what we wrote, it is taken as our own write (it is the state we asked for).
        """
        success = {"request_put": _put(compare[0]["key"], value, lease)}
        try:
            body = self._txn(compare, success)
        except OutcomeUnknown as exc:
            _log.warning("etcd: %s; sending the guarded write of %r again", exc, key)
            body = self._txn(compare, success)
            current = body["responses"][0].get("response_range", {}).get("kvs", [])
            if not body.get("succeeded") and current:
                kv = decode_kv(current[0])
                if (kv.value, kv.lease) == (value, lease):
                    return kv.mod_revision, body
        return (_revision(body) if body.get("succeeded") else 0), body

    def _txn(self, compare: Sequence[Json], success: Json) -> Json:
        """One transaction; the failure branch reads the key so callers can explain why."""
        key = compare[0]["key"]
        request = {
            "compare": compare,
            "success": [success],
            "failure": [{"request_range": {"key": key}}],
        }
        return self._gateway.call("/v3/kv/txn", request, idempotent=False)


def _put(raw_key: str, value: bytes, lease: int) -> Json:
    request: Json = {"key": raw_key, "value": b64(value)}
    if lease:
        request["lease"] = lease
    return request


def _exists_at(raw_key: str, mod_revision: int | None) -> list[Json]:
    """Compare clauses: the key exists and, when given, is still at mod_revision."""
    compare: list[Json] = [
        {"target": "CREATE", "key": raw_key, "create_revision": 0, "result": "GREATER"}
    ]
    if mod_revision is not None:
        compare.append(
            {"target": "MOD", "key": raw_key, "mod_revision": mod_revision, "result": "EQUAL"}
        )
    return compare


def _raise_cas_failure(key: str, mod_revision: int | None, body: Json) -> None:
    current = body["responses"][0]["response_range"].get("kvs", [])
    if not current:
        raise KeyNotFound(key)
    actual = to_int(current[0], "mod_revision")
    raise RevisionConflict(f"{key}: expected mod_revision {mod_revision}, found {actual}")


def _revision(body: Json) -> int:
    return to_int(body.get("header", {}), "revision")
