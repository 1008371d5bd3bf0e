"""How to reach etcd: endpoints, TLS files and timeouts, from the environment or calicoctl.cfg.

Inputs are Calico's own names so existing deployments work unchanged: the environment variables
`ETCD_ENDPOINTS`, `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE` (plus the legacy
`ETCD_SCHEME`/`ETCD_AUTHORITY` pair when `ETCD_ENDPOINTS` is unset), or the `spec` of a
calicoctl `CalicoAPIConfig` document (`etcdEndpoints`, `etcdCACertFile`, ...).
Malformed input raises `ValueError` here, at start-up, rather than as a connection error later,
and so do Calico's settings calico-py has no behaviour for (`DATASTORE_TYPE=kubernetes`, DNS SRV
discovery, user/password authentication, inline PEM, the Kubernetes datastore's keys).

A host's components order the endpoints for that host (`EtcdConfig.for_host`), so that hosts
given the same list spread over the members instead of all starting on the first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
_NO_K8S = "calico-py has no Kubernetes datastore"
_NO_AUTH = "etcd user authentication is not built (use TLS client certificates)"
_NO_SRV = "no DNS SRV discovery: list the endpoints"
# Calico's datastore environment variables with no calico-py behaviour: name -> why.
UNSUPPORTED_ENV = {
    "ETCD_DISCOVERY_SRV": f"{_NO_SRV} in ETCD_ENDPOINTS",
    "ETCD_USERNAME": _NO_AUTH,
    "ETCD_PASSWORD": _NO_AUTH,
    "ETCD_KEY": "inline PEM is not supported: use ETCD_KEY_FILE",
    "ETCD_CERT": "inline PEM is not supported: use ETCD_CERT_FILE",
    "ETCD_CA_CERT": "inline PEM is not supported: use ETCD_CA_CERT_FILE",
}
# calicoctl.cfg `spec` keys (Calico's CalicoAPIConfigSpec): working ones, then refused ones.
_SPEC_KEYS = ("datastoreType", "etcdEndpoints", "etcdKeyFile", "etcdCertFile", "etcdCACertFile")
UNSUPPORTED_SPEC = {
    "etcdDiscoverySrv": f"{_NO_SRV} in etcdEndpoints",
    "etcdUsername": _NO_AUTH,
    "etcdPassword": _NO_AUTH,
    "etcdKey": "inline PEM is not supported: use etcdKeyFile",
    "etcdCert": "inline PEM is not supported: use etcdCertFile",
    "etcdCACert": "inline PEM is not supported: use etcdCACertFile",
    **{
        key: _NO_K8S
        for key in (
            "kubeconfig",
            "kubeconfigInline",
            "k8sAPIEndpoint",
            "k8sKeyFile",
            "k8sCertFile",
            "k8sCAFile",
            "k8sAPIToken",
            "k8sInsecureSkipTLSVerify",
            "k8sDisableNodePoll",
            "k8sClientQPS",
        )
    },
}


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse the datastore variables calico-py cannot honour (ValueError naming one)."""
    datastore = environ.get("DATASTORE_TYPE", "").strip()
    if datastore not in ("", "etcdv3"):
        raise ValueError(f"DATASTORE_TYPE: {datastore!r} is not supported: {_NO_K8S} (etcdv3)")
    for name, why in UNSUPPORTED_ENV.items():
        if environ.get(name, "").strip():
            raise ValueError(f"{name}: not supported: {why}")


@dataclass(frozen=True, slots=True)
class EtcdConfig:
    """Connection settings; every timeout is in seconds and bounds one step, so nothing hangs.

    connect_timeout bounds each TCP/TLS connect (per endpoint), request_timeout each unary call;
    watch_idle_timeout is how long a watch stream may stay silent before the client probes the
    server (and reopens the stream) to tell a quiet watch from a dead connection.
    """

    endpoints: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    ca_cert_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    connect_timeout: float = 2.0
    request_timeout: float = 5.0
    watch_idle_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("etcd config: no endpoints given")
        for endpoint in self.endpoints:
            _check_endpoint(endpoint)
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("etcd config: a client certificate needs both cert and key files")
        for name in ("connect_timeout", "request_timeout", "watch_idle_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"etcd config: {name} must be positive")

    def for_host(self, host: str) -> EtcdConfig:
        """These settings with the endpoints in `host`'s order (`host_order`)."""
        return replace(self, endpoints=host_order(self.endpoints, host))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> EtcdConfig:
        """Read Calico's ETCD_* environment variables (empty values count as unset)."""
        check_environment(environ)
        endpoints = environ.get("ETCD_ENDPOINTS", "").strip()
        if not endpoints and environ.get("ETCD_AUTHORITY", "").strip():
            scheme = environ.get("ETCD_SCHEME", "").strip() or "http"
            endpoints = f"{scheme}://{environ['ETCD_AUTHORITY'].strip()}"
        return cls(
            endpoints=parse_endpoints(endpoints or DEFAULT_ENDPOINT),
            ca_cert_file=environ.get("ETCD_CA_CERT_FILE") or None,
            cert_file=environ.get("ETCD_CERT_FILE") or None,
            key_file=environ.get("ETCD_KEY_FILE") or None,
        )

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any]) -> EtcdConfig:
        """Read the `spec` of a calicoctl.cfg (`kind: CalicoAPIConfig`) document."""
        for key, value in spec.items():
            if key in UNSUPPORTED_SPEC and value not in (None, "", False, 0):
                raise ValueError(f"spec.{key}: not supported: {UNSUPPORTED_SPEC[key]}")
            if key not in _SPEC_KEYS and key not in UNSUPPORTED_SPEC:
                raise ValueError(f"spec.{key}: unknown field")
        datastore_type = spec.get("datastoreType") or "etcdv3"
        if datastore_type != "etcdv3":
            raise ValueError(
                f"spec.datastoreType: {datastore_type!r} is not supported: {_NO_K8S} (etcdv3)"
            )
        raw = spec.get("etcdEndpoints") or DEFAULT_ENDPOINT
        if isinstance(raw, list):
            raw = ",".join(str(item) for item in raw)
        if not isinstance(raw, str):
            raise ValueError(f"etcd config: etcdEndpoints must be a string, got {raw!r}")
        return cls(
            endpoints=parse_endpoints(raw),
            ca_cert_file=_optional_str(spec, "etcdCACertFile"),
            cert_file=_optional_str(spec, "etcdCertFile"),
            key_file=_optional_str(spec, "etcdKeyFile"),
        )


def host_order(endpoints: tuple[str, ...], host: str) -> tuple[str, ...]:
    """`endpoints` ranked by a hash of (host, endpoint), highest first (rendezvous hashing).

    The client stays on the first endpoint that answers, so this is the member a host's
    watches sit on: the same on every start and for every component of the host, about
    1/len(endpoints) of the hosts on each, whatever order the list was written in. When a
    member fails, its hosts' next choices are spread over the others as well (a rotation of
    the list would send them all to the next member), and adding a member moves only the
    hosts that rank it first.
    """

    def rank(endpoint: str) -> bytes:
        return hashlib.sha256(f"{host}\0{endpoint}".encode("utf-8", "surrogateescape")).digest()

    return tuple(sorted(endpoints, key=rank, reverse=True))


def parse_endpoints(text: str) -> tuple[str, ...]:
    """Split a comma list of endpoint URLs, dropping blanks and trailing slashes."""
    endpoints = tuple(part.strip().rstrip("/") for part in text.split(",") if part.strip())
    for endpoint in endpoints:
        _check_endpoint(endpoint)
    if not endpoints:
        raise ValueError(f"etcd config: no endpoints in {text!r}")
    return endpoints


def _check_endpoint(endpoint: str) -> None:
    if endpoint.startswith("unix://"):
        if not endpoint[len("unix://") :]:
            raise ValueError(
                f"etcd config: malformed endpoint {endpoint!r}: expected unix://<path>"
            )
        return
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"etcd config: malformed endpoint {endpoint!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"etcd config: malformed endpoint {endpoint!r}: expected http(s)://host[:port]"
            " or unix://<socket path>"
        )
    if parts.path.strip("/") or parts.query or parts.fragment or port == 0:
        raise ValueError(
            f"etcd config: malformed endpoint {endpoint!r}: expected scheme://host:port"
        )


def _optional_str(spec: Mapping[str, Any], name: str) -> str | None:
    value = spec.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"etcd config: {name} must be a string, got {value!r}")
    return value
