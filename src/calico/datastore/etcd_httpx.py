"""The default transport under `etcd_gateway.Gateway`: one pooled httpx client for every
endpoint (unix:// ones through a mount on their socket), and the only transport that streams
(watches). Together with `etcd_watch`, this is the only code that imports httpx.
"""

from __future__ import annotations

import httpx

from calico.datastore.config import EtcdConfig
from calico.datastore.etcd_gateway import (
    HEADERS,
    TransportFailure,
    decode_error,
    is_unix,
    unix_path,
)
from calico.datastore.etcd_tls import ssl_context


class HttpxTransport:
    def __init__(self, config: EtcdConfig) -> None:
        timeout = httpx.Timeout(config.request_timeout, connect=config.connect_timeout)
        # unix:// endpoints get a placeholder base URL routed to their socket by a mount.
        self._base = {
            ep: _unix_base(i) if is_unix(ep) else ep for i, ep in enumerate(config.endpoints)
        }
        context = ssl_context(config)
        mounts: dict[str, httpx.BaseTransport] = {
            self._base[ep]: httpx.HTTPTransport(uds=unix_path(ep), verify=context)
            for ep in config.endpoints
            if is_unix(ep)
        }
        # trust_env=False: proxy variables and .netrc must not redirect datastore traffic.
        self._client = httpx.Client(
            timeout=timeout, verify=context, trust_env=False, mounts=mounts, headers=HEADERS
        )

    def post(self, endpoint: str, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            response = self._client.post(self._base[endpoint] + path, content=body)
        except httpx.TransportError as exc:
            raise TransportFailure.of(exc, unsent=_unsent(exc)) from exc
        return response.status_code, response.content

    def open_stream(
        self, endpoint: str, path: str, body: bytes, read_timeout: float
    ) -> httpx.Response:
        try:
            request = self._client.build_request("POST", self._base[endpoint] + path, content=body)
            response = self._client.send(request, stream=True)
            if response.status_code != httpx.codes.OK:
                response.read()
                response.close()
                raise decode_error(response.status_code, response.content)
        except httpx.TransportError as exc:
            raise TransportFailure.of(exc, unsent=_unsent(exc)) from exc
        # httpcore reads this (shared) dict when the body iteration starts.
        timeouts = response.request.extensions["timeout"]
        response.request.extensions["timeout"] = {**timeouts, "read": read_timeout}
        return response

    def close(self) -> None:
        self._client.close()


def _unsent(exc: httpx.TransportError) -> bool:
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def _unix_base(index: int) -> str:
    return f"http://etcd-unix-socket-{index}"
