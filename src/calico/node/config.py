"""calico/node's settings, from the environment as Calico's calico/node reads them (pure).

`NODENAME` (else `HOSTNAME`, else the host name), `IP` (an IPv4 address with prefix length,
`autodetect`, or `none`; unset: the Node's saved address, else autodetect), `IP6` (the same for
IPv6; unset: the saved one, else none), `AS` (unset: keep the Node's), the datastore's
`ETCD_*` variables, `CALICO_RUN_DIR` (default /var/run/calico), `CALICO_NETWORKING_BACKEND`
(`bird`, or `none` for policy only), `CALICO_IPV4POOL_CIDR`/`CALICO_IPV6POOL_CIDR` (create a
default pool when the datastore has none of that family). Flags given to `calico node run`
override the environment. Errors name the variable.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from calico.model.fields import is_subdomain

AUTODETECT = "autodetect"
NONE = "none"
DEFAULT_RUN_DIR = "/var/run/calico"
MAX_AS = 4294967295


class NodeConfigError(ValueError):
    """A setting is malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class NodeSettings:
    nodename: str
    ip: str | None  # "a.b.c.d/len", AUTODETECT, NONE; None: keep the Node's, else autodetect
    ip6: str | None  # "x::y/len", AUTODETECT, NONE; None: keep the Node's, else none
    as_number: int | None
    run_dir: Path
    networking: bool  # run the BGP agent and BIRD
    ipv4_pool: str | None = None
    ipv6_pool: str | None = None


def settings_from_env(
    environ: Mapping[str, str], overrides: Mapping[str, str | None] | None = None
) -> NodeSettings:
    """Read the settings; `overrides` (flag values, keyed by variable name) win when not None."""
    env = {k: v for k, v in environ.items() if v != ""}
    env.update({k: v for k, v in (overrides or {}).items() if v is not None})
    nodename = env.get("NODENAME") or env.get("HOSTNAME") or os.uname().nodename
    nodename = nodename.strip().lower()
    if not is_subdomain(nodename):
        raise NodeConfigError(f"NODENAME: {nodename!r} is not a valid node name (a DNS name)")
    backend = env.get("CALICO_NETWORKING_BACKEND", "bird").lower()
    if backend not in ("bird", "none"):
        raise NodeConfigError(f"CALICO_NETWORKING_BACKEND: {backend!r} is not 'bird' or 'none'")
    return NodeSettings(
        nodename=nodename,
        ip=parse_ip_setting("IP", env["IP"], 4) if "IP" in env else None,
        ip6=parse_ip_setting("IP6", env["IP6"], 6) if "IP6" in env else None,
        as_number=parse_as(env.get("AS")),
        run_dir=Path(env.get("CALICO_RUN_DIR", DEFAULT_RUN_DIR)),
        networking=backend == "bird",
        ipv4_pool=_pool("CALICO_IPV4POOL_CIDR", env.get("CALICO_IPV4POOL_CIDR"), 4),
        ipv6_pool=_pool("CALICO_IPV6POOL_CIDR", env.get("CALICO_IPV6POOL_CIDR"), 6),
    )


def parse_ip_setting(name: str, value: str, version: int) -> str:
    """`autodetect`, `none`, or an address with prefix length ("/32" or "/128" if omitted)."""
    text = value.strip()
    if text.lower() in (AUTODETECT, NONE):
        return text.lower()
    if text.lower() == "can-reach" or text.lower().startswith("can-reach="):
        raise NodeConfigError(f"{name}: only 'autodetect' (first-found) is supported")
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise NodeConfigError(
            f"{name}: {text!r} is not an IPv{version} address, 'autodetect' or 'none'"
        ) from None
    if iface.version != version:
        raise NodeConfigError(f"{name}: {text!r} is not an IPv{version} address")
    return str(iface)


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


def _pool(name: str, value: str | None, version: int) -> str | None:
    if value is None:
        return None
    try:
        net = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise NodeConfigError(f"{name}: {value!r} is not a CIDR") from None
    if net.version != version:
        raise NodeConfigError(f"{name}: {value!r} is not an IPv{version} CIDR")
    return str(net)
