"""calico/node's settings, from the environment as Calico's calico/node reads them (pure).

Every variable Calico documents for calico/node is classified in `NODE_VARIABLES`: it works,
or a value asking for behaviour calico-py does not have is refused here, at start, with an
error naming the variable. Flags given to `calico node run` override the environment.
`FELIX_*` variables are Felix's: the node passes its whole environment to Felix.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from calico.bgp.secrets import DEFAULT_SECRETS_DIR
from calico.model.errors import describe
from calico.model.fields import duration_seconds, is_subdomain
from calico.model.network import EncapMode, IPPool

AUTODETECT = "autodetect"
BACKENDS = ("bird", "vxlan", "none")  # CALICO_NETWORKING_BACKEND
NONE = "none"
DEFAULT_RUN_DIR = "/var/run/calico"
MAX_AS = 4294967295

# IP_AUTODETECTION_METHOD / IP6_AUTODETECTION_METHOD kinds (calico/node's spellings).
FIRST_FOUND = "first-found"
INTERFACE = "interface"
SKIP_INTERFACE = "skip-interface"
CIDR = "cidr"
CAN_REACH = "can-reach"
K8S_INTERNAL_IP = "kubernetes-internal-ip"

_TRUE = frozenset({"true"})
_BOOL = frozenset({"true", "false"})
# logrus level names (Calico parses CALICO_STARTUP_LOGLEVEL with logrus.ParseLevel), plus the
# older docs' CRITICAL and NONE (nothing logged).
LOG_LEVELS = {
    "trace": 5,
    "debug": 10,
    "info": 20,
    "warn": 30,
    "warning": 30,
    "error": 40,
    "fatal": 50,
    "panic": 50,
    "critical": 50,
    "none": 100,
}


class NodeConfigError(ValueError):
    """A setting is malformed or not supported; the message names the variable."""


@dataclass(frozen=True, slots=True)
class NodeVariable:
    """One documented calico/node variable: what works, what is refused (for the docs).

    `accepted`: when not None, the only values (lower case) taken; anything else is refused
    with `refused` as the reason. When None, the variable's own parser below checks it.
    """

    name: str
    works: str
    refused: str = ""
    accepted: frozenset[str] | None = None


_NO_K8S = "calico-py has no Kubernetes API (the datastore is etcd)"

# The single classification of calico/node's environment (docs/support-node.md shows it).
NODE_VARIABLES: tuple[NodeVariable, ...] = (
    NodeVariable("NODENAME", "the Node's name (lower-cased DNS name); else HOSTNAME, else the host name"),  # noqa: E501
    NodeVariable("HOSTNAME", "the Node's name when NODENAME is unset"),
    NodeVariable("IP", "IPv4 address[/len] (no length: the interface's, else /32), `autodetect`, `none`; unset: the Node's saved address, else autodetect"),  # noqa: E501
    NodeVariable("IP6", "IPv6 address[/len] (no length: /128), `autodetect`, `none`; unset: the saved address, else none"),  # noqa: E501
    NodeVariable("IP_AUTODETECTION_METHOD", "`first-found`, `interface=REGEX[,REGEX]`, `skip-interface=REGEX[,REGEX]`, `cidr=CIDR[,CIDR]`, `can-reach=DEST`", f"`kubernetes-internal-ip`: {_NO_K8S}; any other method"),  # noqa: E501
    NodeVariable("IP6_AUTODETECTION_METHOD", "as IP_AUTODETECTION_METHOD, for IPv6", f"`kubernetes-internal-ip`: {_NO_K8S}; any other method"),  # noqa: E501
    NodeVariable("AS", "the Node's AS number (1-4294967295 or asdot); unset keeps the Node's"),
    NodeVariable("CALICO_ROUTER_ID", "BIRD's router id: an IPv4 address or `hash` (of the node name); default the Node's IPv4, else the hash"),  # noqa: E501
    NodeVariable("CALICO_K8S_NODE_REF", "written to the Node's spec.orchRefs (orchestrator k8s)"),
    NodeVariable("CALICO_NETWORKING_BACKEND", "`bird` (default: BIRD and the BGP agent), `vxlan` (Felix without BIRD and the BGP agent; addresses and VXLAN tunnel addresses are registered as with bird), `none` (policy only: Felix alone; IP/IP6 are not used and the Node's addresses are left as they are, as Calico)"),  # noqa: E501
    NodeVariable("CALICO_IPV4POOL_CIDR", "the default IPv4 pool, created when no IPv4 pool exists (unset: no pool; Calico invents 192.168.0.0/16)"),  # noqa: E501
    NodeVariable("CALICO_IPV6POOL_CIDR", "the default IPv6 pool, created when no IPv6 pool exists (unset: no pool)"),  # noqa: E501
    NodeVariable("CALICO_IPV4POOL_BLOCK_SIZE", "the default IPv4 pool's blockSize (20-32, default 26)"),  # noqa: E501
    NodeVariable("CALICO_IPV6POOL_BLOCK_SIZE", "the default IPv6 pool's blockSize (116-128, default 122)"),  # noqa: E501
    NodeVariable("CALICO_IPV4POOL_NAT_OUTGOING", "the default IPv4 pool's natOutgoing (default true)"),  # noqa: E501
    NodeVariable("CALICO_IPV6POOL_NAT_OUTGOING", "the default IPv6 pool's natOutgoing (default false)"),  # noqa: E501
    NodeVariable("CALICO_IPV4POOL_NODE_SELECTOR", "the default IPv4 pool's nodeSelector (default all())"),  # noqa: E501
    NodeVariable("CALICO_IPV6POOL_NODE_SELECTOR", "the default IPv6 pool's nodeSelector (default all())"),  # noqa: E501
    NodeVariable("CALICO_IPV4POOL_DISABLE_BGP_EXPORT", "the default IPv4 pool's disableBGPExport (default false)"),  # noqa: E501
    NodeVariable("CALICO_IPV6POOL_DISABLE_BGP_EXPORT", "the default IPv6 pool's disableBGPExport (default false)"),  # noqa: E501
    NodeVariable("CALICO_IPV4POOL_IPIP", "`Never`, `Off` (the default)", "`Always`, `CrossSubnet`: calico-py has no IPIP dataplane; use CALICO_IPV4POOL_VXLAN", frozenset({"never", "off"})),  # noqa: E501
    NodeVariable("CALICO_IPV4POOL_VXLAN", "the default IPv4 pool's vxlanMode: `Never` (the default, also `Off`), `Always`, `CrossSubnet`"),  # noqa: E501
    NodeVariable("CALICO_IPV6POOL_VXLAN", "the default IPv6 pool's vxlanMode: `Never` (the default, also `Off`), `Always`, `CrossSubnet`"),  # noqa: E501
    NodeVariable("NO_DEFAULT_POOLS", "`true`: create no pool (refused together with a CALICO_IPV*POOL_CIDR, as in Calico); `false`"),  # noqa: E501
    NodeVariable("DATASTORE_TYPE", "`etcdv3` (also the default here; Calico's is kubernetes)", f"`kubernetes`: {_NO_K8S}", frozenset({"etcdv3"})),  # noqa: E501
    NodeVariable("ETCD_ENDPOINTS", "comma list of etcd URLs (http, https, unix)"),
    NodeVariable("ETCD_KEY_FILE", "client key for etcd TLS"),
    NodeVariable("ETCD_CERT_FILE", "client certificate for etcd TLS"),
    NodeVariable("ETCD_CA_CERT_FILE", "CA bundle for etcd TLS"),
    NodeVariable("ETCD_DISCOVERY_SRV", "", "any value: no DNS SRV discovery; list the endpoints in ETCD_ENDPOINTS", frozenset()),  # noqa: E501
    NodeVariable("KUBECONFIG", "", f"any value: {_NO_K8S}", frozenset()),
    NodeVariable("K8S_API_ENDPOINT", "", f"any value: {_NO_K8S}", frozenset()),
    NodeVariable("K8S_CERT_FILE", "", f"any value: {_NO_K8S}", frozenset()),
    NodeVariable("K8S_KEY_FILE", "", f"any value: {_NO_K8S}", frozenset()),
    NodeVariable("K8S_CA_FILE", "", f"any value: {_NO_K8S}", frozenset()),
    NodeVariable("USE_POD_CIDR", "`false` (the default)", f"`true`: {_NO_K8S}", frozenset({"false"})),  # noqa: E501
    NodeVariable("CALICO_MANAGE_CNI", "`true`, `false` (Calico acts on it only with the Kubernetes datastore)", "", _BOOL),  # noqa: E501
    NodeVariable("CALICO_DISABLE_FILE_LOGGING", "`false` (the default)", "`true`: Felix and BIRD always log to felix.log and bird.log in CALICO_RUN_DIR", frozenset({"false"})),  # noqa: E501
    NodeVariable("CALICO_STARTUP_LOGLEVEL", "the node's log level (trace, debug, info, warning, error, fatal, panic, critical, none; default info)"),  # noqa: E501
    NodeVariable("WAIT_FOR_DATASTORE", "`true`, `false`: calico-py always waits for etcd at start (Calico without it exits and is restarted until etcd answers)", "", _BOOL),  # noqa: E501
    NodeVariable("DISABLE_NODE_IP_CHECK", "`true` skips the check that no other Node uses this node's addresses; `false` (default)", "", _BOOL),  # noqa: E501
    NodeVariable("AUTODETECT_POLL_INTERVAL", "how often the node checks its addresses again and updates the Node (Go duration, default 60s; not with CALICO_NETWORKING_BACKEND=none, as Calico)"),  # noqa: E501
    NodeVariable("CLUSTER_TYPE", "comma list merged into ClusterInformation `default` spec.clusterType"),  # noqa: E501
    NodeVariable("CALICO_RUN_DIR", "calico-py's: the node's files (default /var/run/calico)"),
    NodeVariable("CALICO_SECRETS_DIR", "calico-py's: BGP password files, `<dir>/<secret name>/<key>` for a secretKeyRef (default /etc/calico/secrets; files must give others no access)"),  # noqa: E501
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AutodetectMethod:
    """A parsed IP_AUTODETECTION_METHOD: its kind and arguments (regexes, CIDRs, or DEST)."""

    kind: str = FIRST_FOUND
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DefaultPool:
    """A pool to create at start when the datastore has none of its family."""

    cidr: str
    block_size: int | None = None
    nat_outgoing: bool = False
    node_selector: str | None = None
    disable_bgp_export: bool = False
    vxlan_mode: EncapMode | None = None  # "Always" or "CrossSubnet"; None: Never


@dataclass(frozen=True, slots=True)
class NodeSettings:
    nodename: str
    ip: str | None  # "a.b.c.d/len", AUTODETECT, NONE; None: keep the Node's, else autodetect
    ip6: str | None  # "x::y/len", AUTODETECT, NONE; None: keep the Node's, else none
    as_number: int | None
    run_dir: Path
    networking: bool  # register addresses and tunnel addresses (backend bird or vxlan)
    bgp: bool = True  # run the BGP agent and BIRD (backend bird)
    ipv4_pool: DefaultPool | None = None
    ipv6_pool: DefaultPool | None = None
    ip_method: AutodetectMethod = field(default_factory=AutodetectMethod)
    ip6_method: AutodetectMethod = field(default_factory=AutodetectMethod)
    ip_has_prefix: bool = True  # IP gave a prefix length; else the interface's is used
    router_id: str | None = None
    k8s_node_ref: str | None = None
    cluster_types: tuple[str, ...] = ()
    check_ip_conflicts: bool = True
    log_level: int = 20
    poll_interval: float = 60.0  # seconds between address checks after start
    secrets_dir: Path = DEFAULT_SECRETS_DIR  # BGP password files (calico.bgp.secrets)


def settings_from_env(
    environ: Mapping[str, str], overrides: Mapping[str, str | None] | None = None
) -> NodeSettings:
    """Read the settings; `overrides` (flag values, keyed by variable name) win when not None."""
    env = {k: v for k, v in environ.items() if v != ""}
    env.update({k: v for k, v in (overrides or {}).items() if v is not None})
    check_table(env)
    nodename = env.get("NODENAME") or env.get("HOSTNAME") or os.uname().nodename
    nodename = nodename.strip().lower()
    if not is_subdomain(nodename):
        raise NodeConfigError(f"NODENAME: {nodename!r} is not a valid node name (a DNS name)")
    backend = env.get("CALICO_NETWORKING_BACKEND", "bird").strip().lower()
    if backend not in BACKENDS:
        raise NodeConfigError(
            f"CALICO_NETWORKING_BACKEND: {backend!r} is not 'bird', 'vxlan' or 'none'"
        )
    ip_text = env.get("IP", "").strip()
    return NodeSettings(
        nodename=nodename,
        ip=parse_ip_setting("IP", env["IP"], 4) if "IP" in env else None,
        ip6=parse_ip_setting("IP6", env["IP6"], 6) if "IP6" in env else None,
        as_number=parse_as(env.get("AS")),
        run_dir=Path(env.get("CALICO_RUN_DIR", DEFAULT_RUN_DIR)),
        networking=backend != "none",
        bgp=backend == "bird",
        ipv4_pool=_default_pool(env, 4),
        ipv6_pool=_default_pool(env, 6),
        ip_method=parse_autodetection_method(
            "IP_AUTODETECTION_METHOD", env.get("IP_AUTODETECTION_METHOD"), 4
        ),
        ip6_method=parse_autodetection_method(
            "IP6_AUTODETECTION_METHOD", env.get("IP6_AUTODETECTION_METHOD"), 6
        ),
        ip_has_prefix="/" in ip_text or ip_text.lower() in ("", AUTODETECT, NONE),
        router_id=_router_id(env.get("CALICO_ROUTER_ID")),
        k8s_node_ref=env.get("CALICO_K8S_NODE_REF", "").strip() or None,
        cluster_types=tuple(t for t in re.split(r"\s*,\s*", env.get("CLUSTER_TYPE", "")) if t),
        check_ip_conflicts=not _bool(env, "DISABLE_NODE_IP_CHECK", False),
        log_level=_log_level(env.get("CALICO_STARTUP_LOGLEVEL")),
        poll_interval=_poll_interval(env.get("AUTODETECT_POLL_INTERVAL")),
        secrets_dir=Path(env.get("CALICO_SECRETS_DIR") or DEFAULT_SECRETS_DIR),
    )


def check_table(env: Mapping[str, str]) -> None:
    """Refuse the values `NODE_VARIABLES` lists as not supported."""
    for var in NODE_VARIABLES:
        value = env.get(var.name)
        if var.accepted is None or value is None or value.strip().lower() in var.accepted:
            continue
        if var.accepted == _BOOL:
            raise NodeConfigError(f"{var.name}: {value!r} is not 'true' or 'false'")
        reason = var.refused.split(": ", 1)[-1]
        raise NodeConfigError(f"{var.name}: {value!r} is not supported: {reason}")


def parse_ip_setting(name: str, value: str, version: int) -> str:
    """`autodetect`, `none`, or an address with prefix length ("/32" or "/128" if omitted)."""
    text = value.strip()
    if text.lower() in (AUTODETECT, NONE):
        return text.lower()
    if "=" in text:
        raise NodeConfigError(
            f"{name}: {text!r} is not an address: set {name}=autodetect and "
            f"{name}_AUTODETECTION_METHOD={text}"
        )
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise NodeConfigError(
            f"{name}: {text!r} is not an IPv{version} address, 'autodetect' or 'none'"
        ) from None
    if iface.version != version:
        raise NodeConfigError(f"{name}: {text!r} is not an IPv{version} address")
    return str(iface)


def parse_autodetection_method(name: str, value: str | None, version: int) -> AutodetectMethod:
    """calico/node's method syntax: arguments are split on commas (spaces around them ignored);
    regexes are Go's (here Python's `re`, which agrees on the common syntax)."""
    text = (value or "").strip()
    if text in ("", FIRST_FOUND):
        return AutodetectMethod()
    if text.startswith(K8S_INTERNAL_IP):
        raise NodeConfigError(
            f"{name}: {text!r} is not supported: calico-py has no Kubernetes API to read the "
            "node's InternalIP from (use interface=, cidr= or can-reach=, or set the address)"
        )
    kind, eq, rest = text.partition("=")
    if not eq or kind not in (INTERFACE, SKIP_INTERFACE, CIDR, CAN_REACH):
        raise NodeConfigError(
            f"{name}: {text!r} is not an autodetection method (first-found, interface=REGEX, "
            "skip-interface=REGEX, cidr=CIDR, can-reach=DESTINATION)"
        )
    if kind == CAN_REACH:
        return AutodetectMethod(CAN_REACH, (_reach_destination(name, rest.strip(), version),))
    args = tuple(re.split(r"\s*,\s*", rest))
    if kind == CIDR:
        return AutodetectMethod(CIDR, tuple(_method_cidr(name, a, version) for a in args))
    for regex in args:
        try:
            re.compile(regex)
        except re.error as exc:
            raise NodeConfigError(
                f"{name}: {regex!r} is not a valid regular expression: {exc}"
            ) from None
    return AutodetectMethod(kind, args)


def _method_cidr(name: str, text: str, version: int) -> str:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise NodeConfigError(f"{name}: cidr={text!r} is not a CIDR") from None
    if net.version != version:
        raise NodeConfigError(f"{name}: cidr={text!r} is not an IPv{version} CIDR")
    return str(net)


def _reach_destination(name: str, dest: str, version: int) -> str:
    if not dest:
        raise NodeConfigError(f"{name}: can-reach= needs a destination address or host name")
    try:
        addr = ipaddress.ip_address(dest.strip("[]"))
    except ValueError:
        return dest  # a host name, resolved when detecting (as Calico does)
    if addr.version != version:
        raise NodeConfigError(f"{name}: can-reach={dest} is not an IPv{version} address")
    return str(addr)


def parse_as(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    if "." in text:  # asdot notation "1.10" = 1 * 65536 + 10
        high, _, low = text.partition(".")
        if high.isdigit() and low.isdigit() and int(high) < 65536 and int(low) < 65536:
            return int(high) * 65536 + int(low)
    elif text.isdigit() and 0 < int(text) <= MAX_AS:
        return int(text)
    raise NodeConfigError(f"AS: {text!r} is not an AS number (1-{MAX_AS} or asdot)")


def _router_id(value: str | None) -> str | None:
    text = (value or "").strip()
    if not text:
        return None
    if text == "hash":
        return text
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise NodeConfigError(
            f"CALICO_ROUTER_ID: {text!r} is not an IPv4 address or 'hash'"
        ) from None


def _poll_interval(value: str | None) -> float:
    text = (value or "").strip()
    if not text:
        return 60.0
    try:
        seconds = duration_seconds(text)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise NodeConfigError(
            f"AUTODETECT_POLL_INTERVAL: {text!r} is not a positive duration (e.g. 60s, 5m)"
        )
    return seconds


def _log_level(value: str | None) -> int:
    text = (value or "info").strip().lower()
    if text not in LOG_LEVELS:
        raise NodeConfigError(
            f"CALICO_STARTUP_LOGLEVEL: {value!r} is not a log level ({', '.join(LOG_LEVELS)})"
        )
    return LOG_LEVELS[text]


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text not in _BOOL:
        raise NodeConfigError(f"{name}: {env[name]!r} is not 'true' or 'false'")
    return text == "true"


def _default_pool(env: Mapping[str, str], version: int) -> DefaultPool | None:
    prefix = f"CALICO_IPV{version}POOL_"
    value = env.get(prefix + "CIDR")
    nat = _bool(env, prefix + "NAT_OUTGOING", version == 4)
    no_export = _bool(env, prefix + "DISABLE_BGP_EXPORT", False)
    vxlan = _vxlan_mode(env, prefix + "VXLAN")
    if _bool(env, "NO_DEFAULT_POOLS", False):
        if value is not None:
            raise NodeConfigError(
                f"NO_DEFAULT_POOLS: 'true' contradicts {prefix}CIDR (set one or the other)"
            )
        return None
    if value is None:
        return None
    try:
        net = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise NodeConfigError(f"{prefix}CIDR: {value!r} is not a CIDR") from None
    if net.version != version:
        raise NodeConfigError(f"{prefix}CIDR: {value!r} is not an IPv{version} CIDR")
    block = env.get(prefix + "BLOCK_SIZE", "").strip()
    low, high = (20, 32) if version == 4 else (116, 128)
    if block and (not block.isdigit() or not low <= int(block) <= high):
        raise NodeConfigError(f"{prefix}BLOCK_SIZE: {block!r} is not a block size ({low}-{high})")
    selector = env.get(prefix + "NODE_SELECTOR", "").strip() or None
    for name, field_name, value in (
        ("NODE_SELECTOR", "nodeSelector", selector),
        ("VXLAN", "vxlanMode", vxlan),
    ):
        if value is not None:  # the pool model judges it (vxlanMode may be refused there)
            spec = {"cidr": str(net), field_name: value}
            try:
                IPPool.model_validate({"metadata": {"name": "default"}, "spec": spec})
            except ValidationError as exc:
                reason = describe(exc.errors()[0])[1]
                raise NodeConfigError(f"{prefix}{name}: {value!r}: {reason}") from None
    return DefaultPool(str(net), int(block) if block else None, nat, selector, no_export, vxlan)


def _vxlan_mode(env: Mapping[str, str], name: str) -> EncapMode | None:
    """calico/node's spellings: never/off (None), always, crosssubnet or cross-subnet."""
    text = env.get(name, "").strip().lower()
    if text in ("", "never", "off"):
        return None
    if text == "always":
        return "Always"
    if text in ("crosssubnet", "cross-subnet"):
        return "CrossSubnet"
    raise NodeConfigError(f"{name}: {env[name]!r} is not 'Never', 'Always' or 'CrossSubnet'")


def variables_markdown() -> str:
    """`NODE_VARIABLES` as the Markdown table in docs/support-node.md."""
    rows = ["| variable | works | refused |", "|---|---|---|"]
    rows += [f"| `{v.name}` | {v.works or '-'} | {v.refused or '-'} |" for v in NODE_VARIABLES]
    return "\n".join(rows) + "\n"
