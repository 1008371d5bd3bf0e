"""The network configuration on stdin, with Calico's keys, and where the node name comes from.

Keys are those of Calico's cni-plugin (`pkg/types/types.go`) so existing conflists work:
`etcd_endpoints`, `etcd_key_file`/`etcd_cert_file`/`etcd_ca_cert_file`, `etcd_scheme` and
`etcd_authority` (legacy), `datastore_type` (etcdv3 only), `nodename`, `nodename_file`, `mtu`,
`require_mtu_file`, `ipam {type, assign_ipv4, assign_ipv6, ipv4_pools, ipv6_pools}`,
`policy {type}`, `container_settings {allow_ip_forwarding}`, `log_level`, `log_file_path`,
`nodename_file_optional`, `include_default_routes` (the result always carries the default
routes). Labels come from the CNI convention `args.cni.labels` and from Mesos'
`args.org.apache.mesos.network_info.labels`, as Calico reads them. Calico's other keys
(`UNSUPPORTED`) are refused with code 7 naming the key path unless absent or off (null, false,
0, "", [] or {}). calico-py adds `mtu_file_path` (default /var/lib/calico/mtu: where Felix
writes the MTU that `mtu` 0 or absent falls back to, as Calico's plugin reads it; see
`workload_mtu`). Keys Calico does not know are ignored (runtimes add their own); a known key of
the wrong type is code 7, JSON that does not decode is code 6, an unknown cniVersion code 1.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from calico.cni.spec import CniError, Code, check_version
from calico.datastore.config import EtcdConfig
from calico.model.names import check_label_value, check_qualified_name
from calico.model.vxlan import DEFAULT_MTU_FILE

CALICO_IPAM = "calico-ipam"
DEFAULT_NODENAME_FILE = "/var/lib/calico/nodename"
_NETWORK_NAME_RE = re.compile(r"^[a-zA-Z0-9_.\-]+$")
_MESOS_NAMESPACE_LABEL = "projectcalico.org/namespace"
_ETCD_KEYS = {
    "etcd_endpoints": "ETCD_ENDPOINTS",
    "etcd_authority": "ETCD_AUTHORITY",
    "etcd_scheme": "ETCD_SCHEME",
    "etcd_key_file": "ETCD_KEY_FILE",
    "etcd_cert_file": "ETCD_CERT_FILE",
    "etcd_ca_cert_file": "ETCD_CA_CERT_FILE",
}
T = TypeVar("T")
_NO_K8S = "calico-py has no Kubernetes API (the datastore is etcd)"
_WINDOWS = "Windows only"
# Calico's cni-plugin keys (pkg/types) with no calico-py behaviour: key path -> why.
UNSUPPORTED: dict[str, str] = {
    "mode": "Windows networking modes (vxlan) are not built",
    "vxlan_mac_prefix": _WINDOWS,
    "vxlan_vni": _WINDOWS,
    "num_queues": "multi-queue veths are not built",
    "ipam_lock_file": "calico-py's IPAM takes no host lock (etcd compare-and-swap instead)",
    "etcd_discovery_srv": "no DNS SRV discovery: list the endpoints in etcd_endpoints",
    "log_file_max_size": "log rotation is not built (rotate log_file_path externally)",
    "log_file_max_age": "log rotation is not built (rotate log_file_path externally)",
    "log_file_max_count": "log rotation is not built (rotate log_file_path externally)",
    "policy.k8s_api_root": _NO_K8S,
    "policy.k8s_auth_token": _NO_K8S,
    "policy.k8s_client_certificate": _NO_K8S,
    "policy.k8s_client_key": _NO_K8S,
    "policy.k8s_certificate_authority": _NO_K8S,
    "kubernetes.k8s_api_root": _NO_K8S,
    "kubernetes.kubeconfig": _NO_K8S,
    "kubernetes.node_name": f"{_NO_K8S}; use nodename",
    "feature_control.ip_addrs_no_ipam": "addresses without IPAM are not built",
    "feature_control.floating_ips": "floating IPs from pod annotations need Kubernetes",
    "dataplane_options": "alternative dataplanes are not built",
    "windows_pod_deletion_timestamp_timeout": _WINDOWS,
    "windows_use_single_network": _WINDOWS,
    "windows_disable_default_deny_all_policy": _WINDOWS,
    "windows_loopback_DSR": _WINDOWS,
    "readiness_gates": "readiness gates are not built",
    "policy_setup_timeout_seconds": "waiting for Felix to program the endpoint is not built",
    "endpoint_status_dir": "waiting for Felix to program the endpoint is not built",
    "hostname": "deprecated by Calico: use nodename",
    "ipam.subnet": "host-local's usePodCidr: calico-ipam assigns from IP pools",
    "ipam.ip_pools_label_selector_keys": "pool selection by pod labels is not built",
}
_POLICY_TYPES = ("", "k8s")
# logrus's level names, which Calico's plugin parses log_level with, and the Python level each
# sets (logrus's trace has no Python counterpart: debug).
LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}


@dataclass(frozen=True, slots=True)
class IPAMConf:
    type: str
    assign_ipv4: bool = True
    assign_ipv6: bool = False
    ipv4_pools: tuple[str, ...] = ()
    ipv6_pools: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NetConf:
    cni_version: str
    name: str
    type: str
    ipam: IPAMConf
    etcd_settings: Mapping[str, str]  # ETCD_* variable -> value, from the config keys
    nodename: str | None = None
    nodename_file: str | None = None
    mtu: int = 0  # 0: the MTU file's, else the kernel's default
    mtu_file: str = DEFAULT_MTU_FILE
    require_mtu_file: bool = False
    policy_type: str = ""
    allow_ip_forwarding: bool = False
    log_level: str = "info"
    log_file_path: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    namespace: str | None = None  # Mesos' projectcalico.org/namespace label


def parse_netconf(data: bytes) -> NetConf:
    doc = _decode(data)
    version = _get(doc, "cniVersion", str, "") or "0.2.0"  # Calico's default when absent
    check_version(version)
    name = _get(doc, "name", str, "")
    if not _NETWORK_NAME_RE.match(name):
        raise CniError(Code.INVALID_CONFIG, f"invalid network name {name!r}: use a-z 0-9 _ . -")
    datastore = _get(doc, "datastore_type", str, "") or "etcdv3"
    if datastore != "etcdv3":
        raise CniError(
            Code.INVALID_CONFIG,
            f"datastore_type: {datastore!r} is not supported: {_NO_K8S}",
        )
    _refuse_unsupported(doc)
    policy_type = _get(_section(doc, "policy"), "type", str, "")
    if policy_type not in _POLICY_TYPES:
        raise CniError(Code.INVALID_CONFIG, f"policy.type: {policy_type!r} is not 'k8s' or empty")
    _get(doc, "nodename_file_optional", bool, False)
    _get(doc, "include_default_routes", bool, False)
    labels, namespace = _labels(doc.get("args"))
    return NetConf(
        cni_version=version,
        name=name,
        type=_get(doc, "type", str, ""),
        ipam=_ipam(doc),
        etcd_settings={env: _get(doc, key, str, "") for key, env in _ETCD_KEYS.items()},
        nodename=_get(doc, "nodename", str, "") or None,
        nodename_file=_get(doc, "nodename_file", str, "") or None,
        mtu=_mtu(doc),
        mtu_file=_get(doc, "mtu_file_path", str, "") or DEFAULT_MTU_FILE,
        require_mtu_file=_get(doc, "require_mtu_file", bool, False),
        policy_type=policy_type,
        allow_ip_forwarding=_get(
            _section(doc, "container_settings"), "allow_ip_forwarding", bool, False
        ),
        log_level=_log_level(doc),
        log_file_path=_get(doc, "log_file_path", str, "") or None,
        labels=labels,
        namespace=namespace,
    )


def _refuse_unsupported(doc: Mapping[str, Any]) -> None:
    for path, reason in UNSUPPORTED.items():
        section, _, key = path.rpartition(".")
        value = _section(doc, section).get(key) if section else doc.get(key)
        if value not in (None, False, 0, "", [], {}):
            raise CniError(
                Code.INVALID_CONFIG, f"{path}: {json.dumps(value)} is not supported: {reason}"
            )


def _decode(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CniError(Code.DECODING_FAILURE, "failed to decode network config", str(exc)) from None
    except RecursionError:  # the decoder recurses once per level of nesting
        raise CniError(
            Code.DECODING_FAILURE, "failed to decode network config", "nested too deeply"
        ) from None
    if not isinstance(doc, dict):
        raise CniError(Code.DECODING_FAILURE, "network config must be a JSON object")
    return doc


def _get(doc: Mapping[str, Any], key: str, kind: type[T], default: T) -> T:
    """doc[key] if present and of `kind` (absent or null: default); else code 7."""
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CniError(
            Code.INVALID_CONFIG, f"{key} must be a {kind.__name__}, not {json.dumps(value)}"
        )
    return value


def _section(doc: Mapping[str, Any], key: str) -> dict[str, Any]:
    return _get(doc, key, dict, {})


def _log_level(doc: Mapping[str, Any]) -> str:
    level = (_get(doc, "log_level", str, "") or "info").lower()
    if level not in LOG_LEVELS:
        raise CniError(
            Code.INVALID_CONFIG, f"log_level: {level!r} is not one of {', '.join(LOG_LEVELS)}"
        )
    return level


def _mtu(doc: Mapping[str, Any]) -> int:
    mtu = _get(doc, "mtu", int, 0)
    if not _mtu_ok(mtu):
        raise CniError(Code.INVALID_CONFIG, f"mtu {mtu} is out of range (68-65535)")
    return mtu


def _mtu_ok(mtu: int) -> bool:
    return mtu == 0 or 68 <= mtu <= 65535


def workload_mtu(conf: NetConf) -> int:
    """The veth MTU, as Calico's plugin picks it: `mtu` if set, else the number in the MTU
    file Felix writes (its tunnel MTU), else 0 (the kernel's default). A missing file is fine
    unless `require_mtu_file`; an unreadable or malformed one fails the ADD (code 5)."""
    if conf.mtu:
        return conf.mtu
    try:
        text = Path(conf.mtu_file).read_text()
    except FileNotFoundError:
        if conf.require_mtu_file:
            raise CniError(
                Code.IO_FAILURE,
                f"failed to read MTU file {conf.mtu_file}: it does not exist (require_mtu_file"
                " is set: Felix has not written it yet)",
            ) from None
        return 0
    except OSError as exc:
        raise CniError(Code.IO_FAILURE, f"failed to read MTU file {conf.mtu_file}: {exc}") from None
    value = text.strip()
    if not value.isdigit() or not _mtu_ok(int(value)):
        raise CniError(Code.IO_FAILURE, f"MTU file {conf.mtu_file}: {value!r} is not an MTU")
    return int(value)


def _ipam(doc: Mapping[str, Any]) -> IPAMConf:
    section = _section(doc, "ipam")
    ipam_type = _get(section, "type", str, "")
    if ipam_type != CALICO_IPAM:
        raise CniError(
            Code.INVALID_CONFIG,
            f"ipam.type: {ipam_type!r} is not supported: use {CALICO_IPAM!r}"
            " (delegating to other IPAM plugins is not built in calico-py)",
        )
    conf = IPAMConf(
        type=ipam_type,
        assign_ipv4=_flag(section, "assign_ipv4", True),
        assign_ipv6=_flag(section, "assign_ipv6", False),
        ipv4_pools=_pools(section, "ipv4_pools"),
        ipv6_pools=_pools(section, "ipv6_pools"),
    )
    if not conf.assign_ipv4 and not conf.assign_ipv6:
        raise CniError(Code.INVALID_CONFIG, "assign_ipv4 and assign_ipv6 are both false")
    return conf


def _flag(section: Mapping[str, Any], key: str, default: bool) -> bool:
    """Calico spells these as the strings "true"/"false"; booleans are accepted too."""
    value = section.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise CniError(Code.INVALID_CONFIG, f'ipam.{key} must be "true" or "false", not {value!r}')


def _pools(section: Mapping[str, Any], key: str) -> tuple[str, ...]:
    pools = _get(section, key, list, [])
    if not all(isinstance(p, str) and p for p in pools):
        raise CniError(Code.INVALID_CONFIG, f"ipam.{key} must be a list of pool names or CIDRs")
    return tuple(pools)


def _labels(args: Any) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """Labels from `args.cni.labels` and Mesos' network_info; Mesos may set the namespace."""
    if not isinstance(args, dict):
        return (), None
    cni = args.get("cni")
    cni = cni if isinstance(cni, dict) else {}
    mesos = args.get("org.apache.mesos")
    info = mesos.get("network_info") if isinstance(mesos, dict) else None
    mesos_labels = info.get("labels") if isinstance(info, dict) else None
    raw = list(_label_list(cni.get("labels")))
    raw += _label_list(mesos_labels.get("labels") if isinstance(mesos_labels, dict) else None)
    labels: dict[str, str] = {}
    namespace = None
    for key, value in raw:
        if key == _MESOS_NAMESPACE_LABEL:
            namespace = value
            continue
        problem = check_qualified_name(key) or check_label_value(value)
        if problem:
            raise CniError(Code.INVALID_CONFIG, f"invalid label {key}={value!r}: {problem}")
        labels[key] = value
    return tuple(sorted(labels.items())), namespace


def _label_list(items: Any) -> list[tuple[str, str]]:
    if items is None:
        return []
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("key"), str) and isinstance(i.get("value"), str)
        for i in items
    ):
        raise CniError(Code.INVALID_CONFIG, 'labels must be a list of {"key": .., "value": ..}')
    return [(i["key"], i["value"]) for i in items]


def etcd_config(conf: NetConf, environ: Mapping[str, str]) -> EtcdConfig:
    """Config keys override the ETCD_* environment, as Calico's plugin does (code 7 if bad)."""
    merged = dict(environ)
    merged.update({env: value for env, value in conf.etcd_settings.items() if value})
    try:
        return EtcdConfig.from_env(merged)
    except ValueError as exc:
        raise CniError(Code.INVALID_CONFIG, str(exc)) from None


def determine_nodename(
    conf: NetConf,
    environ: Mapping[str, str],
    read_text: Callable[[str], str | None] | None = None,
    hostname: Callable[[], str] = socket.gethostname,
) -> str:
    """`nodename`, else the nodename file (default /var/lib/calico/nodename), else NODENAME,
    else the hostname."""
    if conf.nodename:
        return conf.nodename
    text = (read_text or _read_text)(conf.nodename_file or DEFAULT_NODENAME_FILE)
    if text and text.strip():
        return text.strip()
    return environ.get("NODENAME", "").strip() or hostname()


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None
