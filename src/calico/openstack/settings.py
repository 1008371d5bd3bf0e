"""The `[calico]` options of neutron's config files, and the etcd they point at (pure).

`OPTIONS` lists every option networking-calico defines (its shared options and the driver's),
each either honoured or refused at start with an error naming it; the driver registers them
with oslo.config, the DHCP agent and `calico-neutron-resync` read the same INI files with
`read_config_files` (no oslo needed on a compute host). `ETCD_ENDPOINTS` in the environment,
when set, overrides host, port and scheme, as it does for every other calico-py component.
Options networking-calico does not define are ignored, as oslo ignores them.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from calico.datastore.config import EtcdConfig, parse_endpoints
from calico.model import status_keys
from calico.openstack import keys

SECTION = "calico"


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One networking-calico option: its oslo type, default and what calico-py does with it."""

    name: str
    kind: str  # "str", "int", "port", "bool"
    default: str | int | bool | None
    help: str


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("etcd_host", "str", "127.0.0.1", "etcd host (ETCD_ENDPOINTS overrides)."),
    OptionSpec("etcd_port", "port", 2379, "etcd client port."),
    OptionSpec("etcd_scheme", "str", "http", "http or https (https also with TLS files)."),
    OptionSpec("etcd_cert_file", "str", None, "Client certificate for etcd (enables TLS)."),
    OptionSpec("etcd_key_file", "str", None, "Client key for etcd."),
    OptionSpec("etcd_ca_cert_file", "str", None, "CA bundle for etcd's certificate (TLS)."),
    OptionSpec("etcd_username", "str", None, "Not supported: use TLS client certificates."),
    OptionSpec("etcd_password", "str", None, "Not supported: use TLS client certificates."),
    OptionSpec("etcd_timeout", "int", None, "Seconds per etcd request (calico-py default 5)."),
    OptionSpec("openstack_region", "str", None, "This region's name when regions share etcd."),
    OptionSpec("max_ingress_connections_per_port", "int", 0, "Not supported unless 0."),
    OptionSpec("max_egress_connections_per_port", "int", 0, "Not supported unless 0."),
    OptionSpec("num_port_status_threads", "int", 4, "Accepted; one worker writes statuses."),
    OptionSpec("etcd_compaction_period_mins", "int", 60, "Minutes between compactions; 0: none."),
    OptionSpec("etcd_compaction_min_revisions", "int", 1000, "Revisions kept when compacting."),
    OptionSpec("project_name_cache_max", "int", 100, "Accepted (no project-name lookups)."),
    OptionSpec("startup_resync", "str", "always", "always or never: resync when leading."),
    OptionSpec("resync_interval_secs", "int", 0, "Deprecated upstream; no effect."),
    OptionSpec("resync_max_interval_secs", "int", 0, "Deprecated upstream; no effect."),
    OptionSpec("fairy_gc_diagnostics", "bool", False, "Not supported unless false."),
    OptionSpec("startup_resync_inject_per_item_delay_ms", "int", 0, "Test-only; only 0."),
)
# Values with no calico-py behaviour: option -> (the value that asks for nothing, why).
_ONLY: dict[str, tuple[object, str]] = {
    "etcd_username": (None, "etcd user authentication is not built (use TLS certificates)"),
    "etcd_password": (None, "etcd user authentication is not built (use TLS certificates)"),
    "max_ingress_connections_per_port": (0, "per-port connection limits are not built"),
    "max_egress_connections_per_port": (0, "per-port connection limits are not built"),
    "fairy_gc_diagnostics": (False, "the SQLAlchemy/eventlet diagnostics are not built"),
    "startup_resync_inject_per_item_delay_ms": (0, "a test-only delay that is not built"),
}


@dataclass(frozen=True, slots=True)
class CalicoOptions:
    etcd_host: str = "127.0.0.1"
    etcd_port: int = 2379
    etcd_scheme: str = "http"
    etcd_cert_file: str | None = None
    etcd_key_file: str | None = None
    etcd_ca_cert_file: str | None = None
    etcd_username: str | None = None
    etcd_password: str | None = None
    etcd_timeout: int | None = None
    openstack_region: str | None = None
    max_ingress_connections_per_port: int = 0
    max_egress_connections_per_port: int = 0
    num_port_status_threads: int = 4
    etcd_compaction_period_mins: int = 60
    etcd_compaction_min_revisions: int = 1000
    project_name_cache_max: int = 100
    startup_resync: str = "always"
    resync_interval_secs: int = 0
    resync_max_interval_secs: int = 0
    fairy_gc_diagnostics: bool = False
    startup_resync_inject_per_item_delay_ms: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.etcd_port < 65536:
            raise ValueError(f"[calico] etcd_port {self.etcd_port}: not a TCP port number")
        if self.openstack_region:
            status_keys.validate_region(self.openstack_region)
        for name, (off, why) in _ONLY.items():
            value = getattr(self, name)
            if value not in (off, ""):
                raise ValueError(f"[calico] {name} {value!r}: not supported: {why}")
        if self.etcd_scheme not in ("http", "https"):
            raise ValueError(f"[calico] etcd_scheme {self.etcd_scheme!r}: not http or https")
        if self.startup_resync not in ("always", "never"):
            raise ValueError(
                f"[calico] startup_resync {self.startup_resync!r}: not 'always' or 'never'"
            )
        if self.etcd_timeout is not None and self.etcd_timeout <= 0:
            raise ValueError(f"[calico] etcd_timeout {self.etcd_timeout}: not a positive number")
        for name in ("etcd_compaction_period_mins", "etcd_compaction_min_revisions"):
            if getattr(self, name) < 0:
                raise ValueError(f"[calico] {name} {getattr(self, name)}: must not be negative")
        if self.num_port_status_threads <= 0:
            raise ValueError(
                f"[calico] num_port_status_threads {self.num_port_status_threads}: not positive"
            )

    @property
    def region_string(self) -> str:
        return status_keys.region_string(self.openstack_region)

    @property
    def namespace(self) -> str:
        return keys.endpoint_namespace(self.openstack_region)

    def etcd_config(self, environ: Mapping[str, str]) -> EtcdConfig:
        """Where etcd is: ETCD_ENDPOINTS if set, else etcd_host:etcd_port (https with TLS
        files or etcd_scheme https); etcd_timeout bounds each request."""
        tls = bool(self.etcd_cert_file or self.etcd_ca_cert_file or self.etcd_scheme == "https")
        override = environ.get("ETCD_ENDPOINTS", "").strip()
        if override:
            endpoints = parse_endpoints(override)
        else:
            host = f"[{self.etcd_host}]" if ":" in self.etcd_host else self.etcd_host
            endpoints = (f"{'https' if tls else 'http'}://{host}:{self.etcd_port}",)
        try:
            return EtcdConfig(
                endpoints=endpoints,
                ca_cert_file=self.etcd_ca_cert_file,
                cert_file=self.etcd_cert_file,
                key_file=self.etcd_key_file,
                **({"request_timeout": float(self.etcd_timeout)} if self.etcd_timeout else {}),
            )
        except ValueError as exc:
            raise ValueError(f"[calico] etcd options: {exc}") from None


def read_config_files(paths: Sequence[str]) -> CalicoOptions:
    """The `[calico]` section of INI files, later files overriding earlier ones, as oslo does.

    Options networking-calico does not define are ignored (as oslo does); a missing file or a
    malformed or unsupported value raises ValueError naming it.
    """
    parser = configparser.ConfigParser(interpolation=None)
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle, source=path)
        except OSError as exc:
            raise ValueError(f"cannot read config file {path}: {exc.strerror}") from None
        except configparser.Error as exc:
            raise ValueError(f"config file {path}: {exc}") from None
    if not parser.has_section(SECTION):
        return CalicoOptions()
    values: dict[str, object] = {}
    for spec in OPTIONS:
        raw = parser.get(SECTION, spec.name, fallback="").strip()
        if raw:
            values[spec.name] = _parse(spec, raw)
    return CalicoOptions(**values)  # type: ignore[arg-type]


def options_from_values(values: Mapping[str, object]) -> CalicoOptions:
    """CalicoOptions from already-typed values (oslo's), "" and None meaning unset."""
    names = {f.name for f in fields(CalicoOptions)}
    given = {k: v for k, v in values.items() if k in names and v not in (None, "")}
    return CalicoOptions(**given)  # type: ignore[arg-type]


def _parse(spec: OptionSpec, raw: str) -> object:
    if spec.kind == "str":
        return raw
    if spec.kind == "bool":  # oslo's spellings
        lowered = raw.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"[calico] {spec.name} {raw!r}: not a boolean")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"[calico] {spec.name} {raw!r}: not an integer") from None
