"""An http.client transport for `etcd_gateway.Gateway`, for processes that live a fraction of
a second and make a few unary calls: the CNI plugin.

Why not httpx there: importing httpx and httpcore added 35 ms to the plugin's imports, http.client
8 ms (best of 9, 2026-12-07, on top of the plugin's other modules: 125 ms, 160 ms, 133 ms),
against an ADD budget of 150 ms. The Gateway still builds every request and decodes every
answer; this only carries bytes: one keep-alive connection per endpoint, no watches.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import ssl
from urllib.parse import urlsplit

from calico.datastore.config import EtcdConfig
from calico.datastore.etcd_gateway import HEADERS, TransportFailure, is_unix, unix_path
from calico.datastore.etcd_tls import ssl_context


class StdlibTransport:
    def __init__(self, config: EtcdConfig) -> None:
        self._config = config
        self._context: ssl.SSLContext | None = None
        self._connections: dict[str, http.client.HTTPConnection] = {}

    def post(self, endpoint: str, path: str, body: bytes) -> tuple[int, bytes]:
        conn = self._connections.pop(endpoint, None)
        if conn is not None and _closed_by_peer(conn):
            conn.close()
            conn = None
        if conn is None:
            conn = self._connect(endpoint)
        try:
            # A failed write still reads what etcd said before it closed (as httpcore does):
            # refusing a client certificate, it sends a TLS alert right after the handshake,
            # which the write reports only as EOF; the read raises the alert, naming the problem.
            with contextlib.suppress(OSError):
                conn.request("POST", _prefix(endpoint) + path, body, HEADERS)
            response = conn.getresponse()
            answer = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransportFailure.of(exc, unsent=False) from exc
        self._connections[endpoint] = conn
        return answer

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    def _connect(self, endpoint: str) -> http.client.HTTPConnection:
        """A connected connection whose reads time out after request_timeout; a failure here
        means the request was never sent."""
        timeout = self._config.connect_timeout
        conn: http.client.HTTPConnection
        if is_unix(endpoint):
            conn = _UnixConnection(unix_path(endpoint), timeout)
        elif endpoint.startswith("https://"):
            if self._context is None:
                self._context = ssl_context(self._config)
            url = urlsplit(endpoint)
            conn = http.client.HTTPSConnection(
                url.hostname or "", url.port, timeout=timeout, context=self._context
            )
        else:
            url = urlsplit(endpoint)
            conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
        try:
            conn.connect()
        except OSError as exc:  # includes ssl.SSLError and timeouts
            conn.close()
            raise TransportFailure.of(exc, unsent=True) from exc
        assert conn.sock is not None
        conn.sock.settimeout(self._config.request_timeout)
        return conn


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _prefix(endpoint: str) -> str:
    return "" if is_unix(endpoint) else urlsplit(endpoint).path.rstrip("/")


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection is readable only when etcd closed it (EOF): sending on it
    would fail with the outcome unknown, so a fresh connection is made instead."""
    if conn.sock is None:
        return True
    readable, _, _ = select.select([conn.sock], [], [], 0)
    return bool(readable)
