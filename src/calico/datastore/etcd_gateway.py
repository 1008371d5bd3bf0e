"""HTTP plumbing for etcd's v3 JSON gateway: endpoint failover, timeouts, TLS, error mapping.

The gateway speaks protobuf-as-JSON: keys and values are base64, int64 fields arrive as strings
and fields holding their default value (0, false, empty) are omitted, so every read goes through
`to_int`/`.get`. Errors come back as `{"code": <gRPC code>, "message": ...}` on unary calls and
as `{"error": {...}}` inside streams. Transport failures become `DatastoreUnavailable` naming
every endpoint tried; no call can block longer than the configured timeouts per endpoint,
plus up to request_timeout of asking again while the members that answer have no leader.

Requests are built and answers decoded here only; a `Transport` carries the bytes: the pooled
httpx one (`etcd_httpx`, the default, which also streams watches) or, for a process that lives
a fraction of a second, http.client (`etcd_stdlib`, unary calls only; see there why).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from calico.datastore.api import (
    DatastoreError,
    DatastoreTlsError,
    DatastoreUnavailable,
    KeyNotFound,
    KeyValue,
)
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd_tls import explain, tls_error

if TYPE_CHECKING:
    import httpx

_log = logging.getLogger(__name__)

Json = dict[str, Any]
T = TypeVar("T")

# gRPC status codes that etcd uses for "try again / try another member".
_GRPC_NOT_FOUND = 5
# DEADLINE_EXCEEDED, UNAVAILABLE, and CANCELED, which a stopping etcd sends ("client
# connection is closing"): all mean "this member cannot answer now".
_GRPC_RETRYABLE = frozenset({1, 4, 14})

# gRPC metadata `hasleader: true` (what etcd's Go client sends for WithRequireLeader; the
# gateway forwards Grpc-Metadata-* headers as metadata). A member cut off from its peers then
# refuses every call with "no leader" instead of timing out or serving a stale serializable
# answer, and cancels its open watches with it instead of leaving them silently quiet.
_REQUIRE_LEADER = {"Grpc-Metadata-Hasleader": "true"}
HEADERS = {"Content-Type": "application/json", **_REQUIRE_LEADER}  # every request's
_NO_LEADER = "etcdserver: no leader"
_ELECTION_POLL = 0.1  # seconds between rounds of the endpoints while none has a leader


class OutcomeUnknown(DatastoreUnavailable):
    """A non-idempotent request failed after it may have reached a member: it may or may not
    have been applied. Only a request whose guard makes a second copy a no-op may be resent."""


class NoLeader(DatastoreUnavailable):
    """The member has no leader (cut off from its peers, or electing). etcd refuses a call
    requiring a leader before acting on it, so even a write is safe to send elsewhere."""


class TransportFailure(DatastoreUnavailable):
    """No answer: the connection failed or broke. `unsent`: the request surely never reached
    etcd (no connection was made); otherwise it may have been applied."""

    def __init__(self, message: str, *, unsent: bool) -> None:
        super().__init__(message)
        self.unsent = unsent

    @classmethod
    def of(cls, exc: Exception, *, unsent: bool) -> TransportFailure:
        return cls(
            f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, unsent=unsent
        )


class Transport(Protocol):
    """Carries one JSON request to an endpoint: (HTTP status, body); TransportFailure (with
    the original error as its cause) when there is no answer."""

    def post(self, endpoint: str, path: str, body: bytes) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


@runtime_checkable
class StreamingTransport(Transport, Protocol):
    def open_stream(
        self, endpoint: str, path: str, body: bytes, read_timeout: float
    ) -> httpx.Response: ...


class GatewayError(DatastoreError):
    """etcd answered, but with an error status (a bad request, a future revision...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"etcd error (gRPC code {code}): {message}")
        self.code = code
        self.message = message

    @property
    def compacted(self) -> bool:
        return "compacted" in self.message


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_key(key: str) -> bytes:
    """Keys are str in the API; surrogateescape lets undecodable etcd keys round-trip."""
    return key.encode("utf-8", "surrogateescape")


def decode_key(raw: str) -> str:
    return base64.b64decode(raw).decode("utf-8", "surrogateescape")


def key_range(prefix: str) -> tuple[bytes, bytes]:
    """[start, end) covering every key that starts with prefix ("" means the whole keyspace)."""
    start = encode_key(prefix)
    stripped = start.rstrip(b"\xff")
    if not stripped:
        return start or b"\0", b"\0"  # etcd: range_end "\0" means "to the end of the keyspace"
    return start, stripped[:-1] + bytes([stripped[-1] + 1])


def to_int(message: Json, field: str) -> int:
    """int64 fields are JSON strings and absent when zero."""
    return int(message.get(field, 0))


def decode_kv(raw: Json) -> KeyValue:
    return KeyValue(
        key=decode_key(raw["key"]),
        value=base64.b64decode(raw.get("value", "")),
        mod_revision=to_int(raw, "mod_revision"),
        create_revision=to_int(raw, "create_revision"),
        lease=to_int(raw, "lease"),
    )


def error_from_body(body: Json) -> DatastoreError:
    """Map a gateway error object (unary or in-stream form) to a typed error."""
    error = body.get("error")
    if isinstance(error, dict):  # in-stream: {"error": {"grpc_code": N, "message": ...}}
        body = {"code": error.get("grpc_code", 2), "message": error.get("message", "")}
    code = int(body.get("code", 2))
    message = str(body.get("message") or body.get("error") or "unknown error")
    if code == _GRPC_NOT_FOUND:
        return KeyNotFound(message)
    if code in _GRPC_RETRYABLE:
        return NoLeader(message) if message == _NO_LEADER else DatastoreUnavailable(message)
    return GatewayError(code, message)


class Gateway:
    """Calls over several equivalent endpoints, preferring the last good one."""

    def __init__(self, config: EtcdConfig, transport: Transport | None = None) -> None:
        self.config = config
        self._preferred = 0
        self._lock = threading.Lock()
        if transport is None:
            from calico.datastore.etcd_httpx import HttpxTransport

            transport = HttpxTransport(config)
        self._transport = transport

    def call(self, path: str, body: Json, *, idempotent: bool = True) -> Json:
        """POST one unary request, failing over to the next endpoint on connection failure.

        Non-idempotent requests fail over only when the request surely was not applied
        (connect errors, "no leader"); otherwise the outcome is unknown and the caller gets
        OutcomeUnknown (a DatastoreUnavailable) rather than a retry that might apply twice.
        """
        return self._while_electing(lambda: self._call_once(path, body, idempotent))

    def open_stream(self, path: str, body: Json, read_timeout: float) -> tuple[str, httpx.Response]:
        """Start a streaming POST: (the endpoint, its response). The headers must come within
        request_timeout, and each later socket read times out after read_timeout seconds."""
        return self._while_electing(lambda: self._open_once(path, body, read_timeout))

    def _while_electing(self, attempt: Callable[[], T]) -> T:
        """`attempt()`; while the members that answer say "no leader" (an election, which a
        leader's death or a partition starts) ask again for up to request_timeout, the bound a call
        has anyway, rather than fail a call that a new leader will answer in a moment."""
        deadline = time.monotonic() + self.config.request_timeout
        while True:
            try:
                return attempt()
            except NoLeader:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(_ELECTION_POLL)

    def _call_once(self, path: str, body: Json, idempotent: bool) -> Json:
        payload = json.dumps(body, separators=(",", ":")).encode()
        failures: list[tuple[str, Exception]] = []
        for endpoint in self._rotation():
            try:
                result = decode_response(*self._transport.post(endpoint, path, payload))
            except DatastoreUnavailable as exc:
                if not idempotent and not _not_applied(exc):
                    self._skip(endpoint)  # a resend, if the caller may, goes elsewhere
                    raise OutcomeUnknown(
                        f"etcd {path} at {endpoint} failed, outcome unknown: {self._describe(exc)}"
                    ) from exc
                failures.append((endpoint, exc))
                continue
            self._remember(endpoint)
            return result
        raise self._unanswered(path, failures)

    def _open_once(self, path: str, body: Json, read_timeout: float) -> tuple[str, httpx.Response]:
        transport = self._transport
        if not isinstance(transport, StreamingTransport):
            raise DatastoreError(f"etcd {path}: this client's transport does not stream")
        payload = json.dumps(body, separators=(",", ":")).encode()
        failures: list[tuple[str, Exception]] = []
        for endpoint in self._rotation():
            try:
                response = transport.open_stream(endpoint, path, payload, read_timeout)
            except DatastoreUnavailable as exc:
                failures.append((endpoint, exc))
                continue
            self._remember(endpoint)
            return endpoint, response
        raise self._unanswered(path, failures)

    def avoid(self, endpoint: str) -> None:
        """Prefer the endpoint after `endpoint`: it just failed us."""
        self._skip(endpoint)

    def _skip(self, endpoint: str) -> None:
        index = self.config.endpoints.index(endpoint)
        with self._lock:
            if self._preferred == index:
                self._preferred = (index + 1) % len(self.config.endpoints)

    def close(self) -> None:
        self._transport.close()

    def _unanswered(self, path: str, failures: list[tuple[str, Exception]]) -> DatastoreError:
        said = "; ".join(f"{endpoint}: {self._describe(exc)}" for endpoint, exc in failures)
        if any(isinstance(exc, NoLeader) for _, exc in failures):  # the rest did not answer
            return NoLeader(f"etcd {path}: no member with a leader answered ({said})")
        tls_only = all(tls_error(exc) is not None for _, exc in failures)
        error = DatastoreTlsError if failures and tls_only else DatastoreUnavailable
        return error(f"etcd {path}: no endpoint answered ({said})")

    def _describe(self, exc: Exception) -> str:
        tls = explain(exc, self.config)
        if tls is not None:
            return tls
        if isinstance(exc, TransportFailure):
            return str(exc)
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    def _rotation(self) -> Iterator[str]:
        endpoints = self.config.endpoints
        first = self._preferred
        for offset in range(len(endpoints)):
            yield endpoints[(first + offset) % len(endpoints)]

    def _remember(self, endpoint: str) -> None:
        index = self.config.endpoints.index(endpoint)
        with self._lock:
            previous, self._preferred = self._preferred, index
        if previous != index:
            _log.warning("etcd: switched to endpoint %s", endpoint)


def is_unix(endpoint: str) -> bool:
    return endpoint.startswith("unix://")


def unix_path(endpoint: str) -> str:
    return endpoint[len("unix://") :]


def decode_response(status: int, raw: bytes) -> Json:
    """A unary call's answer, or the typed error it carries."""
    if status != 200:
        raise decode_error(status, raw)
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise DatastoreError(f"etcd sent malformed JSON: {raw[:200]!r}") from exc
    if not isinstance(body, dict):
        raise DatastoreError(f"etcd sent unexpected JSON: {body!r:.200}")
    if "error" in body:  # streaming endpoints (lease keepalive) report errors in-band
        raise error_from_body(body)
    return body


def decode_error(status: int, raw: bytes) -> DatastoreError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        return error_from_body(body)
    return GatewayError(2, f"HTTP {status}: {raw[:200]!r}")


def _not_applied(exc: Exception) -> bool:
    """etcd surely did not apply the request: it never got there (no connection, TLS refused
    before the server read it), or a member without a leader refused it before acting on it."""
    if isinstance(exc, NoLeader) or (isinstance(exc, TransportFailure) and exc.unsent):
        return True
    return tls_error(exc) is not None
