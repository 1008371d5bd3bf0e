"""The options of neutron's config files that calico-py reads, and the etcd they point at (pure).

`OPTIONS` is the one table of them, each either honoured or refused at start with an error
naming it:
- `[calico]`: every option networking-calico defines (its shared options and the driver's).
  The driver registers them with oslo.config; the DHCP agent and `calico-neutron-resync` read
  the same INI files with `read_config_files` (no oslo needed on a compute host).
  `ETCD_ENDPOINTS` in the environment, when set, overrides host, port and scheme, as it does
  for every other calico-py component.
- `[DEFAULT]`: the Neutron DHCP agent options networking-calico's DHCP agent uses (through
  Neutron's dnsmasq driver, or by overriding them), read by calico-dhcp-agent only
  (`read_dhcp_agent_options`).
Other options are ignored, as oslo ignores options nobody registered.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from calico.datastore.config import EtcdConfig, parse_endpoints
from calico.model import status_keys
from calico.openstack import keys

SECTION = "calico"
DEFAULT = "DEFAULT"


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One option: its section, oslo type, default and what calico-py does with it."""

    name: str
    kind: str  # "str", "int", "port", "bool", "list"
    default: str | int | bool | tuple[str, ...] | None
    help: str
    section: str = SECTION


# networking-calico's QoS burst defaults; 0 also means "the default" there.
QOS_BW_BURST = 4294967296
QOS_PR_BURST = 5
_QOS_DEFAULT_ONLY = "QoS: not supported unless 0 or the default."
_NO_QOS = "QoS (WorkloadEndpoint qosControls) is not supported: Felix does not enforce it"

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
    OptionSpec("max_ingress_connections_per_port", "int", 0, "QoS: not supported unless 0."),
    OptionSpec("max_egress_connections_per_port", "int", 0, "QoS: not supported unless 0."),
    OptionSpec("ingress_burst_bits", "int", QOS_BW_BURST, _QOS_DEFAULT_ONLY),
    OptionSpec("egress_burst_bits", "int", QOS_BW_BURST, _QOS_DEFAULT_ONLY),
    OptionSpec("ingress_minburst_bytes", "int", 0, "QoS: not supported unless 0."),
    OptionSpec("egress_minburst_bytes", "int", 0, "QoS: not supported unless 0."),
    OptionSpec("ingress_burst_packets", "int", QOS_PR_BURST, _QOS_DEFAULT_ONLY),
    OptionSpec("egress_burst_packets", "int", QOS_PR_BURST, _QOS_DEFAULT_ONLY),
    OptionSpec("num_port_status_threads", "int", 4, "Accepted; one worker writes statuses."),
    OptionSpec("etcd_compaction_period_mins", "int", 60, "Minutes between compactions; 0: none."),
    OptionSpec("etcd_compaction_min_revisions", "int", 1000, "Revisions kept when compacting."),
    OptionSpec("project_name_cache_max", "int", 100, "Accepted (no project-name lookups)."),
    OptionSpec("startup_resync", "str", "always", "always or never: resync when leading."),
    OptionSpec("resync_interval_secs", "int", 0, "Deprecated upstream; no effect."),
    OptionSpec("resync_max_interval_secs", "int", 0, "Deprecated upstream; no effect."),
    OptionSpec("fairy_gc_diagnostics", "bool", False, "Not supported unless false."),
    OptionSpec("startup_resync_inject_per_item_delay_ms", "int", 0, "Test-only; only 0."),
    # Neutron's DHCP agent options (calico-dhcp-agent only).
    *(
        OptionSpec(name, kind, default, help, DEFAULT)
        for name, kind, default, help in (
            ("host", "str", None, "This host's name, after --hostname and NODENAME."),
            ("dhcp_lease_duration", "int", 86400, "Lease seconds (at least 120); -1: infinite."),
            ("dns_domain", "str", None, "Domain given to DHCP clients (none unless set)."),
            ("dhcp_domain", "str", None, "Deprecated name of dns_domain."),
            ("dhcp_broadcast_reply", "bool", False, "Broadcast DHCP replies."),
            ("dnsmasq_lease_max", "int", 2**24, "Most DHCP leases per network."),
            ("dnsmasq_config_file", "str", "", "A dnsmasq config file added to each dnsmasq."),
            ("dhcp_renewal_time", "int", 0, "DHCP option T1 in seconds; 0: dnsmasq's."),
            ("dhcp_rebinding_time", "int", 0, "DHCP option T2 in seconds; 0: dnsmasq's."),
            ("dnsmasq_dns_servers", "list", (), "Not supported unless empty (no DNS)."),
            ("dnsmasq_local_resolv", "bool", False, "Not supported unless false (no DNS)."),
            ("dnsmasq_txt_record", "str", "", "Not supported unless empty (no DNS)."),
            ("dnsmasq_enable_addr6_list", "bool", False, "Not supported unless false."),
            ("dnsmasq_base_log_dir", "str", None, "Not supported (logs go to stderr)."),
            ("dhcp_confs", "str", None, "Not supported: files go under $CALICO_RUN_DIR/dhcp."),
            ("enable_isolated_metadata", "bool", False, "Not supported unless false."),
            ("force_metadata", "bool", False, "Not supported unless false."),
            ("enable_metadata_network", "bool", False, "Not supported unless false."),
            ("dhcp_driver", "str", None, "Accepted without effect, as networking-calico."),
            ("interface_driver", "str", None, "Accepted without effect, as networking-calico."),
            ("resync_interval", "int", 5, "Accepted without effect (etcd is watched)."),
            ("resync_throttle", "int", 1, "Accepted without effect (etcd is watched)."),
            ("num_sync_threads", "int", 4, "Accepted without effect."),
            ("bulk_reload_interval", "int", 0, "Accepted without effect."),
        )
    ),
)
# Values with no calico-py behaviour: option -> (the values that ask for nothing, why).
_ONLY: dict[str, tuple[tuple[object, ...], str]] = {
    "etcd_username": ((None,), "etcd user authentication is not built (use TLS certificates)"),
    "etcd_password": ((None,), "etcd user authentication is not built (use TLS certificates)"),
    "max_ingress_connections_per_port": ((0,), _NO_QOS),
    "max_egress_connections_per_port": ((0,), _NO_QOS),
    "ingress_burst_bits": ((0, QOS_BW_BURST), _NO_QOS),
    "egress_burst_bits": ((0, QOS_BW_BURST), _NO_QOS),
    "ingress_minburst_bytes": ((0,), _NO_QOS),
    "egress_minburst_bytes": ((0,), _NO_QOS),
    "ingress_burst_packets": ((0, QOS_PR_BURST), _NO_QOS),
    "egress_burst_packets": ((0, QOS_PR_BURST), _NO_QOS),
    "fairy_gc_diagnostics": ((False,), "the SQLAlchemy/eventlet diagnostics are not built"),
    "startup_resync_inject_per_item_delay_ms": ((0,), "a test-only delay that is not built"),
    # DHCP agent: calico-dhcp-agent's dnsmasq serves DHCP and RAs, no DNS (--port=0) and no
    # metadata.
    "dnsmasq_dns_servers": (((),), "calico-dhcp-agent's dnsmasq answers no DNS"),
    "dnsmasq_local_resolv": ((False,), "calico-dhcp-agent's dnsmasq answers no DNS"),
    "dnsmasq_txt_record": (("",), "calico-dhcp-agent's dnsmasq answers no DNS"),
    "dnsmasq_enable_addr6_list": ((False,), "addr6-list host entries are not built"),
    "dnsmasq_base_log_dir": ((None,), "dnsmasq logs to calico-dhcp-agent's stderr"),
    "dhcp_confs": ((None,), "dnsmasq's files go under $CALICO_RUN_DIR/dhcp"),
    "enable_isolated_metadata": ((False,), "calico-dhcp-agent serves no metadata"),
    "force_metadata": ((False,), "calico-dhcp-agent serves no metadata"),
    "enable_metadata_network": ((False,), "calico-dhcp-agent serves no metadata"),
}
_DOMAIN = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)


def _refuse_unsupported(options: object, section: str) -> None:
    for name, (off, why) in _ONLY.items():
        if hasattr(options, name):
            value = getattr(options, name)
            if value not in (*off, ""):
                raise ValueError(f"[{section}] {name} {value!r}: not supported: {why}")


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
    ingress_burst_bits: int = QOS_BW_BURST
    egress_burst_bits: int = QOS_BW_BURST
    ingress_minburst_bytes: int = 0
    egress_minburst_bytes: int = 0
    ingress_burst_packets: int = QOS_PR_BURST
    egress_burst_packets: int = QOS_PR_BURST
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
        _refuse_unsupported(self, SECTION)
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


@dataclass(frozen=True, slots=True)
class DhcpAgentOptions:
    """The `[DEFAULT]` DHCP agent options (see OPTIONS); None/empty means unset."""

    host: str | None = None
    dhcp_lease_duration: int = 86400
    dns_domain: str | None = None
    dhcp_domain: str | None = None
    dhcp_broadcast_reply: bool = False
    dnsmasq_lease_max: int = 2**24
    dnsmasq_config_file: str = ""
    dhcp_renewal_time: int = 0
    dhcp_rebinding_time: int = 0
    dnsmasq_dns_servers: tuple[str, ...] = ()
    dnsmasq_local_resolv: bool = False
    dnsmasq_txt_record: str = ""
    dnsmasq_enable_addr6_list: bool = False
    dnsmasq_base_log_dir: str | None = None
    dhcp_confs: str | None = None
    enable_isolated_metadata: bool = False
    force_metadata: bool = False
    enable_metadata_network: bool = False
    dhcp_driver: str | None = None
    interface_driver: str | None = None
    resync_interval: int = 5
    resync_throttle: int = 1
    num_sync_threads: int = 4
    bulk_reload_interval: int = 0

    def __post_init__(self) -> None:
        _refuse_unsupported(self, DEFAULT)
        lease = self.dhcp_lease_duration
        if lease != -1 and lease < 120:
            raise ValueError(
                f"[DEFAULT] dhcp_lease_duration {lease}: not -1 (infinite) or at least 120"
                " (dnsmasq's shortest lease)"
            )
        for name in ("dns_domain", "dhcp_domain"):
            value = getattr(self, name)
            if value and not _DOMAIN.match(value.rstrip(".")):
                raise ValueError(f"[DEFAULT] {name} {value!r}: not a domain name")
        if self.dnsmasq_lease_max <= 0:
            raise ValueError(f"[DEFAULT] dnsmasq_lease_max {self.dnsmasq_lease_max}: not positive")
        for name in ("dhcp_renewal_time", "dhcp_rebinding_time"):
            if getattr(self, name) < 0:
                raise ValueError(f"[DEFAULT] {name} {getattr(self, name)}: must not be negative")

    @property
    def domain(self) -> str | None:
        """The DHCP clients' domain: dns_domain, else its old name dhcp_domain (no final dot)."""
        domain = self.dns_domain or self.dhcp_domain
        return domain.rstrip(".") if domain else None


def _read_ini(paths: Sequence[str]) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle, source=path)
        except OSError as exc:
            raise ValueError(f"cannot read config file {path}: {exc.strerror}") from None
        except configparser.Error as exc:
            raise ValueError(f"config file {path}: {exc}") from None
    return parser


def section_options(section: str) -> list[OptionSpec]:
    """The options of one config-file section, in table order."""
    return [o for o in OPTIONS if o.section == section]


def _section_values(section: str, raw_values: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for spec in section_options(section):
        raw = raw_values.get(spec.name, "").strip()
        if raw:
            values[spec.name] = _parse(spec, raw)
    return values


def read_config_files(paths: Sequence[str]) -> CalicoOptions:
    """The `[calico]` section of INI files, later files overriding earlier ones, as oslo does.

    Options networking-calico does not define are ignored (as oslo does); a missing file or a
    malformed or unsupported value raises ValueError naming it.
    """
    parser = _read_ini(paths)
    if not parser.has_section(SECTION):
        return CalicoOptions()
    raw = {o.name: parser.get(SECTION, o.name, fallback="") for o in section_options(SECTION)}
    return CalicoOptions(**_section_values(SECTION, raw))  # type: ignore[arg-type]


def read_dhcp_agent_options(paths: Sequence[str]) -> DhcpAgentOptions:
    """The DHCP agent options of the INI files' `[DEFAULT]` sections (as read_config_files)."""
    parser = _read_ini(paths)
    values = _section_values(DEFAULT, parser.defaults())
    return DhcpAgentOptions(**values)  # type: ignore[arg-type]


def options_from_values(values: Mapping[str, object]) -> CalicoOptions:
    """CalicoOptions from already-typed values (oslo's), "" and None meaning unset."""
    names = {f.name for f in fields(CalicoOptions)}
    given = {k: v for k, v in values.items() if k in names and v not in (None, "")}
    return CalicoOptions(**given)  # type: ignore[arg-type]


def _parse(spec: OptionSpec, raw: str) -> object:
    if spec.kind == "str":
        return raw
    if spec.kind == "list":  # oslo's ListOpt: comma-separated
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if spec.kind == "bool":  # oslo's spellings
        lowered = raw.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"[{spec.section}] {spec.name} {raw!r}: not a boolean")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"[{spec.section}] {spec.name} {raw!r}: not an integer") from None
