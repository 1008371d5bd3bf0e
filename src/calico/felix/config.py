"""Felix's configuration, layered like Calico's.

Lowest to highest: built-in defaults < FelixConfiguration `default` < FelixConfiguration
`node.<nodename>` < the config file (INI, `[global]`, FELIX_CONFIGFILE, default
/etc/calico/felix.cfg) < environment (`FELIX_<NAME>`, case-insensitive, plus `NODENAME`,
`CALICO_RUN_DIR`). Parameter names are Felix's (`ReportingIntervalSecs`...); datastore
values use the FelixConfiguration field names (`reportingInterval: 30s`).

An invalid value in the environment or the config file stops Felix at start with an error
naming the source, the parameter and the reason; an invalid datastore value is reported
and the lower layer's value used, so one bad edit cannot take every host down.

Every upstream Felix parameter is classified once, in `calico.model.support` (by its
FelixConfiguration field): in the environment or the config file, a parameter calico-py does
not read is accepted only with a value that asks for nothing (its upstream default or off),
and an unknown name stops Felix, so nothing set there is silently ignored.
"""

from __future__ import annotations

import configparser
import ipaddress
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from calico.model import status_keys
from calico.model.felix_fields import FELIX_FIELDS, REMOVED_FELIX_FIELDS
from calico.model.fields import duration_seconds
from calico.model.support import FELIX, FELIX_LOCAL, Status
from calico.model.vxlan import DEFAULT_MTU_FILE

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ProtoPort:
    protocol: str  # tcp, udp, sctp
    port: int
    net: str | None = None


def parse_seconds(text: str) -> float:
    """'30', '30s', '1m30s', '500ms' -> seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return duration_seconds(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (e.g. 30, 30s, 1m30s)") from None


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "y", "t"):
        return True
    if lowered in ("false", "0", "no", "n", "f"):
        return False
    raise ValueError(f"{text!r} is not a boolean")


def parse_int(text: str) -> int:
    return int(text.strip(), 0)


def parse_optional_bool(text: str) -> bool | None:
    """A boolean, or None ("" or "none": unset, for upstream's auto-detected switches)."""
    return None if _blank(text) else parse_bool(text)


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = parse_int(text)
        if not low <= value <= high:
            raise ValueError(f"{value} is not within {low}-{high}")
        return value

    return parse


def _choice(field: str) -> Callable[[str], str]:
    """A case-insensitive choice among the FelixConfiguration field's values."""
    allowed = FELIX_FIELDS[field].choices

    def parse(text: str) -> str:
        for value in allowed:
            if value.lower() == text.strip().lower():
                return value
        raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")

    return parse


def parse_ports(text: str) -> tuple[ProtoPort, ...]:
    """Felix's 'tcp:22,udp:68,tcp:10.0.0.0/8:443' list ('none' or '' for empty)."""
    if text.strip().lower() in ("", "none"):
        return ()
    out = []
    for entry in text.split(","):
        protocol, _, rest = entry.strip().partition(":")
        net, _, port = rest.rpartition(":")
        if protocol.lower() not in ("tcp", "udp", "sctp") or not port.isdigit():
            raise ValueError(f"{entry!r} is not protocol:port (e.g. tcp:22)")
        out.append(ProtoPort(protocol.lower(), int(port), net or None))
    return tuple(out)


def parse_prefixes(text: str) -> tuple[str, ...]:
    prefixes = tuple(p.strip() for p in text.split(",") if p.strip())
    if not prefixes:
        raise ValueError("at least one interface prefix is needed")
    return prefixes


def parse_ipv4_or_empty(text: str) -> str:
    """NATOutgoingAddress: an IPv4 address, or "" for none (masquerade)."""
    text = text.strip()
    return str(ipaddress.IPv4Address(text)) if text else ""


def parse_port_range(text: str) -> tuple[int, int] | None:
    """NATPortRange: "lo:hi" or a single port ("" or 0 for none)."""
    text = text.strip()
    if text in ("", "0"):
        return None
    lo, _, hi = text.partition(":")
    first, last = int(lo), int(hi or lo)
    if not 0 < first <= last <= 65535:
        raise ValueError(f"{text!r} is not a port range lo:hi within 1-65535")
    return first, last


def parse_region(text: str) -> str:
    """An OpenStack region name ('' for none); it becomes part of status keys, so it must be
    a valid DNS label, as networking-calico requires of `openstack_region`."""
    region = text.strip()
    if not region:
        return ""
    try:
        status_keys.validate_region(region)
    except ValueError:
        raise ValueError(
            f"{region!r} is not a valid region name: a DNS label (lower case alphanumerics"
            f" or '-') of at most {status_keys.MAX_REGION_LEN} characters"
        ) from None
    return region


def _ports_from_datastore(value: Any) -> str:
    items = [
        f"{d.get('protocol', 'TCP')}:{d['net'] + ':' if d.get('net') else ''}{d['port']}"
        for d in value
    ]
    return ",".join(items) or "none"


def _duration_from_datastore(value: Any) -> str:
    return str(value)


@dataclass(frozen=True, slots=True)
class Param:
    attr: str
    name: str  # Felix's parameter name
    field: str | None  # FelixConfiguration field, if the datastore can set it
    default: str
    parse: Callable[[str], Any]
    from_datastore: Callable[[Any], str] = str


def _bool(attr: str, name: str, field: str, default: str) -> Param:
    return Param(attr, name, field, default, parse_bool, lambda v: str(v).lower())


def _secs(attr: str, name: str, field: str, default: str) -> Param:
    return Param(attr, name, field, default, parse_seconds, _duration_from_datastore)


def _ports(attr: str, name: str, field: str, default: str) -> Param:
    return Param(attr, name, field, default, parse_ports, _ports_from_datastore)


_FAILSAFE_IN = "tcp:22,udp:68,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667"
_FAILSAFE_OUT = "udp:53,udp:67,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667"

PARAMS: tuple[Param, ...] = (
    Param("hostname", "FelixHostname", None, "", str),
    Param("interface_prefixes", "InterfacePrefix", "interfacePrefix", "cali", parse_prefixes),
    Param(
        "default_endpoint_to_host_action",
        "DefaultEndpointToHostAction",
        "defaultEndpointToHostAction",
        "Drop",
        _choice("defaultEndpointToHostAction"),
    ),
    Param(
        "filter_allow_action",
        "IptablesFilterAllowAction",
        "iptablesFilterAllowAction",
        "Accept",
        _choice("iptablesFilterAllowAction"),
    ),
    Param(
        "mangle_allow_action",
        "IptablesMangleAllowAction",
        "iptablesMangleAllowAction",
        "Accept",
        _choice("iptablesMangleAllowAction"),
    ),
    Param(
        "filter_deny_action",
        "IptablesFilterDenyAction",
        "iptablesFilterDenyAction",
        "Drop",
        _choice("iptablesFilterDenyAction"),
    ),
    Param(
        "chain_insert_mode",
        "ChainInsertMode",
        "chainInsertMode",
        "Insert",
        _choice("chainInsertMode"),
    ),
    Param("log_prefix", "LogPrefix", "logPrefix", "calico-packet", str),
    Param(
        "log_severity",
        "LogSeverityScreen",
        "logSeverityScreen",
        "Info",
        _choice("logSeverityScreen"),
    ),
    _bool("ipv6_support", "Ipv6Support", "ipv6Support", "true"),
    _secs("reporting_interval", "ReportingIntervalSecs", "reportingInterval", "30"),
    _secs("reporting_ttl", "ReportingTTLSecs", "reportingTTL", "90"),
    _secs("endpoint_reporting_delay", "EndpointReportingDelaySecs", "endpointReportingDelay", "1"),
    _bool(
        "endpoint_reporting_enabled",
        "EndpointReportingEnabled",
        "endpointReportingEnabled",
        "false",
    ),
    _bool("health_enabled", "HealthEnabled", "healthEnabled", "false"),
    Param("health_host", "HealthHost", "healthHost", "localhost", str),
    Param("health_port", "HealthPort", "healthPort", "9099", parse_int),
    _bool("prometheus_enabled", "PrometheusMetricsEnabled", "prometheusMetricsEnabled", "false"),
    Param("prometheus_host", "PrometheusMetricsHost", "prometheusMetricsHost", "", str),
    Param("prometheus_port", "PrometheusMetricsPort", "prometheusMetricsPort", "9091", parse_int),
    _ports(
        "failsafe_inbound", "FailsafeInboundHostPorts", "failsafeInboundHostPorts", _FAILSAFE_IN
    ),
    _ports(
        "failsafe_outbound", "FailsafeOutboundHostPorts", "failsafeOutboundHostPorts", _FAILSAFE_OUT
    ),
    _secs("iptables_refresh_interval", "IptablesRefreshInterval", "iptablesRefreshInterval", "90"),
    _secs("ipsets_refresh_interval", "IpsetsRefreshInterval", "ipsetsRefreshInterval", "90"),
    _secs("route_refresh_interval", "RouteRefreshInterval", "routeRefreshInterval", "90"),
    _secs(
        "interface_refresh_interval", "InterfaceRefreshInterval", "interfaceRefreshInterval", "90"
    ),
    Param("iptables_mark_mask", "IptablesMarkMask", "iptablesMarkMask", "0xffff0000", parse_int),
    Param(
        "iptables_backend",
        "IptablesBackend",
        "iptablesBackend",
        "Auto",
        _choice("iptablesBackend"),
    ),
    Param("metadata_addr", "MetadataAddr", "metadataAddr", "127.0.0.1", str),
    Param("metadata_port", "MetadataPort", "metadataPort", "8775", parse_int),
    _bool("remove_external_routes", "RemoveExternalRoutes", "removeExternalRoutes", "true"),
    _bool(
        "disable_conntrack_invalid",
        "DisableConntrackInvalidCheck",
        "disableConntrackInvalidCheck",
        "false",
    ),
    _bool(
        "allow_vxlan_from_workloads",
        "AllowVXLANPacketsFromWorkloads",
        "allowVXLANPacketsFromWorkloads",
        "false",
    ),
    _bool(
        "allow_ipip_from_workloads",
        "AllowIPIPPacketsFromWorkloads",
        "allowIPIPPacketsFromWorkloads",
        "false",
    ),
    Param("run_dir", "CalicoRunDir", None, "/var/run/calico", str),
    Param("openstack_region", "OpenstackRegion", "openstackRegion", "", parse_region),
    Param("floating_ips", "FloatingIPs", "floatingIPs", "Disabled", _choice("floatingIPs")),
    Param(
        "nat_outgoing_address", "NATOutgoingAddress", "natOutgoingAddress", "", parse_ipv4_or_empty
    ),
    Param("nat_port_range", "NATPortRange", "natPortRange", "0", parse_port_range),
    Param(
        "nat_outgoing_iface",
        "IptablesNATOutgoingInterfaceFilter",
        "iptablesNATOutgoingInterfaceFilter",
        "",
        str,
    ),
    # Unset (the default) is upstream's auto: VXLAN is used where this host has a VTEP.
    Param(
        "vxlan_enabled",
        "VXLANEnabled",
        "vxlanEnabled",
        "none",
        parse_optional_bool,
        lambda v: str(v).lower(),
    ),
    Param("vxlan_port", "VXLANPort", "vxlanPort", "4789", _bounded(1, 65535)),
    Param("vxlan_vni", "VXLANVNI", "vxlanVNI", "4096", _bounded(1, 2**24 - 1)),
    Param("vxlan_mtu", "VXLANMTU", "vxlanMTU", "0", _bounded(0, 65535)),
    Param("vxlan_mtu_v6", "VXLANMTUV6", "vxlanMTUV6", "0", _bounded(0, 65535)),
    Param("mtu_file", "MTUFilePath", None, DEFAULT_MTU_FILE, str),
)
_BY_NAME = {p.name.lower(): p for p in PARAMS}
_ENV_ALIASES = {
    "NODENAME": "felixhostname",
    "CALICO_RUN_DIR": "calicorundir",
    "FELIX_HOSTNAME": "felixhostname",
}


@dataclass(frozen=True, slots=True)
class FelixConfig:
    hostname: str
    interface_prefixes: tuple[str, ...]
    default_endpoint_to_host_action: str
    filter_allow_action: str
    mangle_allow_action: str
    filter_deny_action: str
    chain_insert_mode: str
    log_prefix: str
    log_severity: str
    ipv6_support: bool
    reporting_interval: float
    reporting_ttl: float
    endpoint_reporting_enabled: bool
    endpoint_reporting_delay: float
    health_enabled: bool
    health_host: str
    health_port: int
    prometheus_enabled: bool
    prometheus_host: str
    prometheus_port: int
    failsafe_inbound: tuple[ProtoPort, ...]
    failsafe_outbound: tuple[ProtoPort, ...]
    iptables_refresh_interval: float
    ipsets_refresh_interval: float
    route_refresh_interval: float
    interface_refresh_interval: float
    iptables_mark_mask: int
    iptables_backend: str
    metadata_addr: str
    metadata_port: int
    remove_external_routes: bool
    disable_conntrack_invalid: bool
    allow_vxlan_from_workloads: bool
    allow_ipip_from_workloads: bool
    run_dir: str
    openstack_region: str
    floating_ips: str
    nat_outgoing_address: str
    nat_port_range: tuple[int, int] | None
    nat_outgoing_iface: str
    vxlan_enabled: bool | None
    vxlan_port: int
    vxlan_vni: int
    vxlan_mtu: int
    vxlan_mtu_v6: int
    mtu_file: str

    @property
    def region_string(self) -> str:
        """Region segment of Felix's status keys: `no-region` or `region-<name>`."""
        return status_keys.region_string(self.openstack_region)


# Upstream Felix parameter names whose FelixConfiguration field is spelt differently.
_UPSTREAM_NAMES = {
    "ipinipenabled": "ipipEnabled",
    "ipinipmtu": "ipipMTU",
    "wireguardpersistentkeepalive": "wireguardKeepAlive",
    "bpfconntrackcleanupmode": "bpfConntrackMode",
    "externalnodescidrlist": "externalNodesList",
}
_FIELD_BY_NAME = {f.lower(): f for f in (*FELIX_FIELDS, *REMOVED_FELIX_FIELDS)}


def _field_for(name: str) -> str | None:
    """The FelixConfiguration field an upstream Felix parameter name (any case) sets."""
    lowered = name.lower()
    for suffix in ("", "secs", "millis"):
        stem = lowered.removesuffix(suffix)
        field = _UPSTREAM_NAMES.get(stem) or _FIELD_BY_NAME.get(stem)
        if field is not None:
            return field
    return None


def _blank(text: str) -> bool:
    """Upstream Felix reads an empty value or "none" as unset."""
    return text.strip().lower() in ("", "none")


def _typed(field: str, text: str) -> Any:
    """A parameter's text as the FelixConfiguration value it stands for ("none": empty)."""
    text = text.strip()
    if _blank(text):
        return None
    kind = FELIX_FIELDS.get(field) or REMOVED_FELIX_FIELDS[field]
    if kind.kind == "bool":
        return parse_bool(text)
    if kind.kind == "int":
        return parse_int(text)
    if kind.kind == "int_or_str":
        return parse_int(text) if text.isdigit() else text
    if kind.kind == "duration":
        return f"{parse_seconds(text)}s"
    if kind.kind.endswith("_list"):
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def check_local(where: str, name: str, value: str) -> bool:
    """Whether a parameter from the environment or the config file is one Felix reads.

    A parameter Felix does not read passes (returns False) only with a value that asks for
    nothing; anything else, or an unknown name, is a ConfigError naming `where`."""
    if name.lower() in _BY_NAME:
        return True
    local = FELIX_LOCAL.get(name.lower())
    if local is not None:
        support, typed, of = local, None if _blank(value) else value.strip(), ""
    elif (field := _field_for(name)) is not None and FELIX[field].status is not Status.SUPPORTED:
        support, of = FELIX[field], f" (FelixConfiguration {field})"
        try:
            typed = _typed(field, value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    else:
        raise ConfigError(f"{where}: not a Felix parameter calico-py knows")
    if support.refuses(typed):
        raise ConfigError(f"{where}: {support.message(typed)}{of}")
    if support.status is Status.NOOP:
        log.info("%s has no effect in calico-py: %s", where, support.reason)
    return False


def env_layer(environ: Mapping[str, str]) -> dict[str, str]:
    """Felix parameters set in the environment (lower-cased names)."""
    out: dict[str, str] = {}
    for key, value in environ.items():
        if key in _ENV_ALIASES:
            out[_ENV_ALIASES[key]] = value
        elif (
            key.upper().startswith("FELIX_")
            and key.upper() != "FELIX_CONFIGFILE"
            and check_local(f"environment variable {key}", key[6:], value)
        ):
            out[key[6:].lower()] = value
    return out


def file_layer(path: str | None) -> dict[str, str]:
    """The [global] section of a Felix INI config file, if it exists."""
    target = Path(path or "/etc/calico/felix.cfg")
    if not target.exists():
        if path:
            raise ConfigError(f"config file {target} does not exist")
        return {}
    # Values are read as written: no %-interpolation, which upstream Felix's file has not.
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep names as written
    try:
        parser.read_string(target.read_text(encoding="utf-8"), str(target))
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(f"config file {target}: {' '.join(str(exc).split())}") from None
    for section in parser.sections():
        if section != "global":
            raise ConfigError(f"config file {target}: [{section}]: only [global] is read")
    items = parser["global"].items() if parser.has_section("global") else []
    return {
        key.lower(): value
        for key, value in items
        if check_local(f"config file {target}: {key}", key, value)
    }


def datastore_layer(spec: Mapping[str, Any] | None) -> dict[str, str]:
    """FelixConfiguration spec fields -> parameter strings."""
    out: dict[str, str] = {}
    for param in PARAMS:
        if spec and param.field and spec.get(param.field) is not None:
            out[param.name.lower()] = param.from_datastore(spec[param.field])
    return out


def build_config(
    environ: Mapping[str, str],
    file_values: Mapping[str, str] | None = None,
    global_spec: Mapping[str, Any] | None = None,
    node_spec: Mapping[str, Any] | None = None,
) -> FelixConfig:
    values: dict[str, Any] = {}
    layers = [
        ("FelixConfiguration default", datastore_layer(global_spec), False),
        ("FelixConfiguration node", datastore_layer(node_spec), False),
        ("config file", dict(file_values or {}), True),
        ("environment", env_layer(environ), True),
    ]
    for param in PARAMS:
        values[param.attr] = param.parse(param.default) if param.default else param.default
        for source, layer, fatal in layers:
            raw = layer.get(param.name.lower())
            if raw is None:
                continue
            try:
                values[param.attr] = param.parse(raw)
            except ValueError as exc:
                if fatal:
                    raise ConfigError(f"{source}: {param.name}: {exc}") from None
                log.error("%s: ignoring invalid %s: %s", source, param.name, exc)
    if not values["hostname"]:
        values["hostname"] = socket.gethostname()
    return FelixConfig(**{f.name: values[f.name] for f in fields(FelixConfig)})
