"""A watch over etcd's streaming `/v3/watch` gateway call, read in the iterating thread.

Stream format: one JSON object per line; `{"result": {"created": true}}` first, then
`{"result": {"events": [...]}}` (PUT events carry no `type`), progress notifications (a result
with a header and no events), `{"result": {"canceled": true, "compact_revision": "N"}}` when the
start revision is compacted, and `{"error": {...}}` followed by EOF when etcd shuts down.

Failover: when the stream breaks the watch reopens on the next member from the next unseen
revision, so the consumer sees neither a gap nor a re-list; only when no member answers does
it raise `DatastoreUnavailable`. A stream breaks when its member is killed or stopping, and
also when the member is cut off from its peers: the gateway asks every call to require a
leader, so etcd ends the stream with `{"error": {"grpc_code": 14, "message": "etcdserver: no
leader"}}` once the member has had no leader for three election timeouts. Without that a
partitioned member keeps the stream open and silent while the majority writes on. While the
members that answer all say "no leader" (an election) the gateway asks again for up to
request_timeout before `DatastoreUnavailable`.

Dead-connection policy: etcd 3.4 sends progress notifications only every 10 minutes by default
(`--experimental-watch-progress-notify-interval`), and the HTTP/1.1 gateway cannot carry a
client's progress request on an open stream. So each socket read times out after
`watch_idle_timeout` seconds; the watch then probes the cluster with a cheap status call. If no
endpoint answers it raises `DatastoreUnavailable`; if one does, the watch is healthy but idle
and is transparently reopened from the next unseen revision. Caveat: if that revision was
compacted meanwhile, the reopened stream reports `WatchCompacted` and the caller re-lists (a
cheap no-op diff for a syncer). Progress notifications, when they come, advance the resume
revision and so make that rarer.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator, Sequence

import httpx

from calico.datastore.api import (
    DatastoreError,
    DatastoreUnavailable,
    EventType,
    WatchCompacted,
    WatchEvent,
)
from calico.datastore.etcd_gateway import (
    Gateway,
    Json,
    b64,
    decode_key,
    error_from_body,
    key_range,
    to_int,
)

_log = logging.getLogger(__name__)


class EtcdWatch:
    """Iterates batches of events under a prefix from start_revision.

    The stream opens lazily, on iteration: start_revision 0 means "from when iteration
    starts", so callers that must not miss anything pass an explicit revision.
    """

    def __init__(self, gateway: Gateway, prefix: str, start_revision: int) -> None:
        self._gateway = gateway
        self._prefix = prefix
        self._next_revision = start_revision
        self._lock = threading.Lock()
        self._closed = False
        self._response: httpx.Response | None = None
        self._lines = 0  # lines read from the current stream

    def __iter__(self) -> Iterator[Sequence[WatchEvent]]:
        lost = 0  # streams lost in a row without a line read from them
        while not self._closed:
            endpoint, response = self._open()  # DatastoreUnavailable when no member answers
            self._lines = 0
            try:
                yield from self._read(response)
            except DatastoreUnavailable as exc:
                # The member went away (killed, stopping, connection cut): resume on another
                # one from the next unseen revision, unless every member keeps dropping us.
                lost = 0 if self._lines else lost + 1
                if self._closed or lost >= len(self._gateway.config.endpoints):
                    raise
                _log.warning(
                    "etcd watch on %r: %s; resuming at revision %d on another member",
                    self._prefix,
                    exc,
                    self._next_revision,
                )
                self._gateway.avoid(endpoint)
            finally:
                response.close()
                with self._lock:
                    self._response = None

    def close(self) -> None:
        """End the iteration promptly, also from another thread (shuts the socket down)."""
        with self._lock:
            self._closed = True
            response = self._response
        if response is not None:
            _shutdown_socket(response)

    def _open(self) -> tuple[str, httpx.Response]:
        key, end = key_range(self._prefix)
        create: Json = {"key": b64(key), "range_end": b64(end), "progress_notify": True}
        if self._next_revision:
            create["start_revision"] = self._next_revision
        endpoint, response = self._gateway.open_stream(
            "/v3/watch", {"create_request": create}, self._gateway.config.watch_idle_timeout
        )
        with self._lock:
            self._response = response
            closed = self._closed
        if closed:  # close() ran while we were connecting
            _shutdown_socket(response)
        return endpoint, response

    def _read(self, response: httpx.Response) -> Iterator[Sequence[WatchEvent]]:
        """Yield batches until the stream ends; return (to reopen) after a healthy idle spell."""
        try:
            for line in response.iter_lines():
                if line.strip():
                    self._lines += 1
                    events = self._parse(line)
                    if events:
                        yield events
        except httpx.ReadTimeout:
            if not self._closed:
                self._probe()
            return
        except httpx.TransportError as exc:
            if self._closed:
                return
            raise DatastoreUnavailable(f"etcd watch connection lost: {exc}") from exc
        if not self._closed:
            raise DatastoreUnavailable("etcd closed the watch stream")

    def _parse(self, line: str) -> list[WatchEvent]:
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise DatastoreError(f"etcd watch sent malformed JSON: {line[:200]!r}") from exc
        if "error" in message:
            error = error_from_body(message)
            raise DatastoreUnavailable(f"etcd ended the watch stream: {error}")
        result: Json = message.get("result", {})
        if result.get("canceled"):
            compact_revision = to_int(result, "compact_revision")
            if compact_revision:
                raise WatchCompacted(compact_revision)
            raise DatastoreError(f"etcd cancelled the watch: {result.get('cancel_reason')}")
        events = [_decode_event(raw) for raw in result.get("events", ())]
        header_revision = to_int(result.get("header", {}), "revision")
        if events:
            self._next_revision = events[-1].mod_revision + 1
        elif not result.get("created") or not self._next_revision:
            # A progress notification (or the creation of a watch "from now"): every event
            # up to the header revision has been delivered.
            self._next_revision = max(self._next_revision, header_revision + 1)
        return events

    def _probe(self) -> None:
        """Raise DatastoreUnavailable unless some endpoint answers a status request."""
        self._gateway.call("/v3/maintenance/status", {})
        _log.debug(
            "etcd watch on %r idle for %.0fs, cluster answers; reopening at revision %d",
            self._prefix,
            self._gateway.config.watch_idle_timeout,
            self._next_revision,
        )


def _decode_event(raw: Json) -> WatchEvent:
    kv: Json = raw["kv"]
    if raw.get("type") == "DELETE":
        return WatchEvent(EventType.DELETE, decode_key(kv["key"]), None, to_int(kv, "mod_revision"))
    value = base64.b64decode(kv.get("value", ""))
    return WatchEvent(EventType.PUT, decode_key(kv["key"]), value, to_int(kv, "mod_revision"))


def _shutdown_socket(response: httpx.Response) -> None:
    """Wake a thread blocked reading this response: close() alone does not on Linux."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
