"""Loading a lab file: YAML -> `LabSpec`, then the checks that span fields (pure).

Every problem is a `LabFileError` naming the file and the field, e.g.
`lab.yaml: hosts[1].ipv4: '198.18.1.5' is not on the fabric 198.18.0.0/24`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from calico.lab.spec import (
    LabSpec,
    etcd_addresses,
    fabric_interface,
    gateway_address,
    gateway_address6,
    rack_of,
    rack_subnets,
)
from calico.model import ResourceError, parse_resource
from calico.model.codec import join_surrogates

RACK_LABEL = "rack"  # the Node label BGPPeers select a rack's nodes by
_PASSWORD = re.compile(r"^[!#-~]{1,80}$")  # printable ASCII less space and the double quote
_PASSWORD_RULE = (
    "must be 1 to 80 printable ASCII characters without spaces or double quotes"
    " (a TCP MD5 key that BIRD and FRR can both spell)"
)

Problem = tuple[str, str]


class LabFileError(ValueError):
    """The lab file is malformed; the message names the file and the field."""


def load_lab(text: str, source: str = "lab file", base_dir: Path | None = None) -> LabSpec:
    """Parse and validate a lab file completely."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LabFileError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:  # the loader recurses once per level of nesting
        raise LabFileError(f"{source}: not valid YAML: nested too deeply") from None
    try:
        doc = join_surrogates(doc)
    except ValueError as exc:
        raise LabFileError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise LabFileError(f"{source}: expected a mapping at the top level")
    if "base_dir" in doc:
        raise LabFileError(f"{source}: base_dir: unknown field")
    try:
        spec = LabSpec.model_validate({**doc, "base_dir": str(base_dir or Path("."))})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise LabFileError(f"{source}: {_path(err['loc'])}: {_reason(err)}") from None
    for field, reason in check_lab(spec):
        raise LabFileError(f"{source}: {field}: {reason}")
    return spec


def read_lab(path: Path) -> LabSpec:
    try:
        text = path.read_text()
    except OSError as exc:
        raise LabFileError(f"{path}: {exc.strerror}") from None
    return load_lab(text, str(path), path.parent)


def check_lab(spec: LabSpec) -> Iterator[Problem]:
    """Cross-field problems, in file order."""
    yield from _check_fabric(spec)
    yield from _check_names(spec)
    yield from (_check_racks(spec) if spec.racks else _check_no_racks(spec))
    if not spec.racks:
        yield from _check_addresses(spec)
    yield from _check_pools(spec)
    yield from _check_workloads(spec)
    yield from _check_externals(spec)
    for i, path in enumerate(spec.resources):
        if not (Path(spec.base_dir) / path).is_file():
            yield f"resources[{i}]", f"no such file: {path!r}"


def _check_fabric(spec: LabSpec) -> Iterator[Problem]:
    if spec.fabric is None:
        if spec.router is None:
            yield "fabric", "required field is missing"
        return
    if spec.router is not None:
        yield "fabric", "a lab with a router has no fabric (its racks are the router's subnets)"
    for field, value, version in (("ipv4", spec.fabric.ipv4, 4), ("ipv6", spec.fabric.ipv6, 6)):
        if value is not None and ipaddress.ip_network(value, strict=False).version != version:
            yield f"fabric.{field}", f"{value!r} is not an IPv{version} network"


def _check_names(spec: LabSpec) -> Iterator[Problem]:
    seen: set[str] = set()
    groups: list[tuple[str, list[Any]]] = [
        ("hosts", spec.hosts),
        ("workloads", spec.workloads),
        ("externals", spec.externals),
    ]
    named = [(f"{g}[{i}].name", item.name) for g, items in groups for i, item in enumerate(items)]
    if spec.border is not None:
        named.append(("border.name", spec.border.name))
    if spec.router is not None:
        named.append(("router.name", spec.router.name))
    named += [(f"racks[{i}].tor.name", r.tor.name) for i, r in enumerate(spec.racks) if r.tor]
    named += [(f"spines[{i}].name", s.name) for i, s in enumerate(spec.spines)]
    for field, name in named:
        if name in seen:
            kinds = "hosts, workloads, externals, border, router, ToRs, spines"
            yield field, f"name {name!r} is used twice ({kinds})"
        seen.add(name)
    racks: set[str] = set()
    for i, rack in enumerate(spec.racks):
        if rack.name in racks:
            yield f"racks[{i}].name", f"rack name {rack.name!r} is used twice"
        racks.add(rack.name)


def _check_no_racks(spec: LabSpec) -> Iterator[Problem]:
    for field in ("model", "spines"):
        if getattr(spec, field):
            yield field, "needs racks (the L3 fabric)"
    if spec.router is not None:
        yield "router", "needs racks (the subnets it joins)"
    if spec.border is not None and spec.border.ipv4 is None:
        yield "border.ipv4", "required field is missing (its address on the fabric)"
    for i, host in enumerate(spec.hosts):
        if host.rack is not None:
            yield f"hosts[{i}].rack", "needs racks (the L3 fabric)"


def _check_racks(spec: LabSpec) -> Iterator[Problem]:
    """Hosts in rack subnets: behind their ToR, ToRs linked to the spines (the L3 fabric), or
    joined by the plain router."""
    yield from (_check_tors(spec) if spec.router is None else _check_router(spec))
    subnets: list[tuple[str, Any]] = []  # the ToR-spine links' network, then the racks'
    if spec.fabric is not None and spec.router is None:
        subnets.append(("fabric.ipv4", ipaddress.ip_network(spec.fabric.ipv4, strict=False)))
    for i, rack in enumerate(spec.racks):
        net = ipaddress.ip_network(rack.subnet, strict=False)
        if net.version != 4 or net.prefixlen > 29:
            yield f"racks[{i}].subnet", f"{rack.subnet!r} is not an IPv4 network of /29 or more"
            return
        clash = next((f for f, n in subnets if n.overlaps(net)), None)
        if clash:
            yield f"racks[{i}].subnet", f"{net} overlaps {clash}"
        subnets.append((f"racks[{i}].subnet", net))
    yield from _check_loopbacks(spec)
    yield from _check_racks6(spec)
    gateway = "tor.ipv4" if spec.router is None else "subnet (the router's address)"
    addresses = [(f"racks[{i}].{gateway}", gateway_address(r)) for i, r in enumerate(spec.racks)]
    addresses += [(f"hosts[{i}].ipv4", h.ipv4) for i, h in enumerate(spec.hosts)]
    addresses += [(f"externals[{i}].ipv4", e.ipv4) for i, e in enumerate(spec.externals)
                  if e.ipv4 and e.behind is None]  # fmt: skip
    addresses += list(_etcd_fields(spec))
    used: dict[str, str] = {}
    for field, address in addresses:
        home = rack_of(spec, address)
        subnet = ipaddress.ip_network(home.subnet, strict=False) if home else None
        ip = ipaddress.ip_address(address.split("/")[0])
        if subnet is None or ip in (subnet.network_address, subnet.broadcast_address):
            yield field, f"{address!r} is not a usable address in a rack's subnet"
        elif str(ip) in used:
            yield field, f"{ip} is already used by {used[str(ip)]}"
        used[str(ip)] = field
    for i, rack in enumerate(spec.racks):
        if rack.tor and rack_of(spec, gateway_address(rack)) not in (rack, None):
            yield f"racks[{i}].tor.ipv4", f"is not in the rack's subnet {rack.subnet}"
    yield from _check_rack_hosts(spec)
    yield from _check_rack_externals(spec)


def _check_tors(spec: LabSpec) -> Iterator[Problem]:
    """The L3 fabric: every rack behind its ToR, the ToRs linked to one or two spines."""
    if spec.model is None:
        yield "model", "racks need a model: as-per-rack or as-per-host (or the lab a router)"
    if not spec.spines:
        yield "spines", "racks need one or two spines"
    if spec.mesh:
        yield "mesh", "the node-to-node mesh is off in an L3 fabric"
    assert spec.fabric is not None  # _check_fabric: without a router it is required
    fabric = ipaddress.ip_network(spec.fabric.ipv4, strict=False)
    if _link_count(spec) * 2 > fabric.num_addresses:
        yield "fabric.ipv4", f"{fabric} is too small for a /31 per {_links(spec)} link"
    yield from _check_fabric_border(spec)
    for i, rack in enumerate(spec.racks):
        tor = rack.tor
        if tor is None:
            yield f"racks[{i}].tor", "every rack needs a ToR (or the lab a router)"
            continue
        for j, spine in enumerate(spec.spines):
            if spine.asNumber == tor.asNumber:
                yield f"spines[{j}].asNumber", f"must differ from {rack.name}'s ToR AS (eBGP)"
        if tor.password is not None and not _PASSWORD.match(tor.password):
            yield f"racks[{i}].tor.password", _PASSWORD_RULE
        other = next((k for k, r in enumerate(spec.racks[:i]) if r.tor and
                      r.tor.asNumber == tor.asNumber), None)  # fmt: skip
        if other is not None:  # the spines would hand one rack's routes to an AS that has them
            yield f"racks[{i}].tor.asNumber", f"is racks[{other}]'s AS too (one AS per rack)"


def _link_count(spec: LabSpec) -> int:
    """Point-to-point links in the L3 fabric: ToR-spine, border-spine."""
    return (len(spec.racks) + (spec.border is not None)) * len(spec.spines)


def _links(spec: LabSpec) -> str:
    return "ToR-spine" + (" and border-spine" if spec.border else "")


def _check_fabric_border(spec: LabSpec) -> Iterator[Problem]:
    """The L3 fabric's border router: linked to the spines (eBGP), its network apart."""
    border = spec.border
    if border is None:
        return
    for key in ("ipv4", "ipv6"):
        if getattr(border, key):
            yield f"border.{key}", "in an L3 fabric the border's addresses are its spine links"
    if border.network.ipv6 and spec.fabric and not spec.fabric.ipv6:
        yield "border.network.ipv6", "needs fabric.ipv6 (the border-spine /127s)"
    for j, spine in enumerate(spec.spines):
        if spine.asNumber == border.asNumber:
            yield "border.asNumber", f"must differ from spines[{j}]'s AS (eBGP)"
    for i, rack in enumerate(spec.racks):
        if rack.tor and rack.tor.asNumber == border.asNumber:
            yield "border.asNumber", f"is racks[{i}]'s ToR AS too (one AS per router)"
    fabric = [n for n in (spec.fabric.ipv4, spec.fabric.ipv6) if n] if spec.fabric else []
    taken = [("fabric", ipaddress.ip_network(n, strict=False)) for n in fabric]
    taken += [(f"racks[{i}]", n) for i, r in enumerate(spec.racks) for n in rack_subnets(r)]
    for key in ("ipv4", "ipv6"):
        value = getattr(border.network, key)
        net = ipaddress.ip_network(value, strict=False) if value else None
        clash = next((f for f, n in taken if net and n.version == net.version and
                      n.overlaps(net)), None)  # fmt: skip
        if clash:
            yield f"border.network.{key}", f"{net} overlaps {clash}'s subnet"


def _check_router(spec: LabSpec) -> Iterator[Problem]:
    """Racks joined by the plain router: no ToRs, spines or fabric model (it speaks no BGP)."""
    for field in ("model", "spines"):
        if getattr(spec, field):
            yield field, "not with a router (it joins plain subnets and speaks no BGP)"
    if spec.border is not None:
        yield "border", "a border router is not supported with racks yet"
    for i, rack in enumerate(spec.racks):
        if rack.tor is not None:
            yield f"racks[{i}].tor", "a rack behind the router has no ToR"


def _check_rack_externals(spec: LabSpec) -> Iterator[Problem]:
    """An external sits in a rack's subnet, the rack's gateway (ToR or router) its gateway, or
    in the L3 fabric behind the border router (`_check_externals`)."""
    for i, ext in enumerate(spec.externals):
        where = f"externals[{i}]"
        if ext.behind is not None:
            continue
        if ext.gateway:
            yield f"{where}.gateway", "the rack's ToR or router is the gateway of an external"
        if ext.ipv4 is None:
            yield f"{where}.ipv4", "an external in a rack needs an IPv4 address in its subnet"
            continue
        rack = rack_of(spec, ext.ipv4)
        if ext.ipv6 and rack is not None and rack_of(spec, ext.ipv6) != rack:
            yield f"{where}.ipv6", f"{ext.ipv6!r} is not in {rack.name}'s subnet {rack.ipv6}"


def _check_racks6(spec: LabSpec) -> Iterator[Problem]:
    """IPv6 in the racks: rack subnets; in the L3 fabric a /127 of `fabric.ipv6` per ToR-spine
    link."""
    if not any(r.ipv6 for r in spec.racks):  # nobody would route its workloads' addresses
        for i, pool in enumerate(spec.pools):
            if ":" in pool.cidr:
                yield f"pools[{i}].cidr", "an IPv6 pool in a lab with racks needs racks[].ipv6"
    seen: list[tuple[str, Any]] = []
    fabric6 = spec.fabric.ipv6 if spec.fabric and spec.router is None else None
    if fabric6 is None and spec.router is None:
        for i, rack in enumerate(spec.racks):
            if rack.ipv6 is not None:
                yield f"racks[{i}].ipv6", "needs fabric.ipv6 (the ToR-spine /127s)"
        return
    if fabric6 is not None:
        fabric = ipaddress.ip_network(fabric6, strict=False)
        if fabric.version != 6:
            return  # _check_fabric says so
        if not any(r.ipv6 for r in spec.racks):
            yield "fabric.ipv6", "no rack has an ipv6 subnet"
        if _link_count(spec) * 2 > fabric.num_addresses:
            yield "fabric.ipv6", f"{fabric} is too small for a /127 per {_links(spec)} link"
        seen.append(("fabric.ipv6", fabric))
    first = next((i for i, r in enumerate(spec.racks) if r.ipv6), None)
    for i, rack in enumerate(spec.racks):
        if rack.ipv6 is None:  # its hosts' workloads would get IPv6 addresses nobody routes
            if first is not None:
                yield f"racks[{i}].ipv6", f"racks[{first}] has ipv6: every rack needs it (or none)"
            continue
        net = ipaddress.ip_network(rack.ipv6, strict=False)
        if net.version != 6 or net.prefixlen > 120:
            yield f"racks[{i}].ipv6", f"{rack.ipv6!r} is not an IPv6 network of /120 or more"
            return
        clash = next((f for f, n in seen if n.overlaps(net)), None)
        if clash:
            yield f"racks[{i}].ipv6", f"{net} overlaps {clash}"
        seen.append((f"racks[{i}].ipv6", net))
    yield from _check_rack_addresses6(spec)


def _check_rack_addresses6(spec: LabSpec) -> Iterator[Problem]:
    """Hosts' and externals' IPv6 addresses: unique, not a subnet's network address."""
    used = {gateway_address6(r): f"racks[{i}].ipv6 (its gateway)" for i, r in enumerate(spec.racks)}
    addresses = [(f"hosts[{i}].ipv6", h.ipv6) for i, h in enumerate(spec.hosts)]
    addresses += [(f"externals[{i}].ipv6", e.ipv6) for i, e in enumerate(spec.externals)
                  if e.behind is None]  # fmt: skip
    for field, address in addresses:
        if address is None:
            continue
        ip = ipaddress.ip_address(address.split("/")[0])
        if ip.version != 6:
            yield field, f"{address!r} is not an IPv6 address"
        elif str(ip) in used:
            yield field, f"{ip} is already used by {used[str(ip)]}"
        elif any(ip == n.network_address for r in spec.racks for n in rack_subnets(r)):
            yield field, f"{ip} is a rack subnet's network address"
        elif field.startswith("externals") and rack_of(spec, address) is None:
            yield field, f"{address!r} is not in a rack's ipv6 subnet"
        used[str(ip)] = field


def _check_loopbacks(spec: LabSpec) -> Iterator[Problem]:
    """A ToR loopback is off every subnet (the hosts reach it through `reachableBy`)."""
    seen: dict[Any, str] = {}
    fabric = [n for n in (spec.fabric.ipv4, spec.fabric.ipv6) if n] if spec.fabric else []
    networks = [*(n for r in spec.racks for n in rack_subnets(r)),
                *(ipaddress.ip_network(n, strict=False) for n in fabric),
                *(ipaddress.ip_network(p.cidr, strict=False) for p in spec.pools)]  # fmt: skip
    for i, rack in enumerate(spec.racks):
        for key, version in (("loopback", 4), ("loopback6", 6)):
            address = getattr(rack.tor, key) if rack.tor else None
            if address is None:
                continue
            field = f"racks[{i}].tor.{key}"
            ip = ipaddress.ip_interface(address).ip
            if ip.version != version:
                yield field, f"{address!r} is not an IPv{version} address"
            elif version == 6 and rack.ipv6 is None:
                yield field, f"needs racks[{i}].ipv6 (the sessions it serves are IPv6)"
            elif any(ip in net for net in networks):
                yield field, f"{ip} is in a rack subnet, the fabric or a pool (a loopback is apart)"
            elif ip in seen:
                yield field, f"{ip} is already {seen[ip]}'s"
            seen[ip] = field


def _check_rack_hosts(spec: LabSpec) -> Iterator[Problem]:
    racks = {r.name for r in spec.racks}
    fabric_as = {r.tor.asNumber for r in spec.racks if r.tor} | {s.asNumber for s in spec.spines}
    fabric_as |= {spec.border.asNumber} if spec.border and spec.racks else set()
    host_as: dict[int, str] = {}
    for i, host in enumerate(spec.hosts):
        where = f"hosts[{i}]"
        if host.rack not in racks:
            yield f"{where}.rack", (
                "every host names its rack" if host.rack is None
                else f"{host.rack!r} is not one of the racks"
            )  # fmt: skip
            continue
        rack = spec.host_rack(host)
        if RACK_LABEL in host.labels:
            yield f"{where}.labels", f"{RACK_LABEL!r} is set from the host's rack"
        if rack_of(spec, host.ipv4) != rack:
            yield f"{where}.ipv4", f"{host.ipv4!r} is not in {rack.name}'s subnet {rack.subnet}"
        if host.ipv6 and rack.ipv6 is None:
            yield f"{where}.ipv6", f"needs racks[{spec.racks.index(rack)}].ipv6"
        elif rack.ipv6 and not host.ipv6:  # its workloads' IPv6 routes need an IPv6 session
            yield f"{where}.ipv6", f"{rack.name} has ipv6: every host in it needs an ipv6 address"
        elif host.ipv6 and rack_of(spec, host.ipv6) != rack:
            yield f"{where}.ipv6", f"{host.ipv6!r} is not in {rack.name}'s subnet {rack.ipv6}"
        if host.routeReflector:
            reason = "with racks the ToRs are the route reflectors"
            yield f"{where}.routeReflector", reason if spec.router is None else "not with racks yet"
        if spec.model == "as-per-rack" and host.asNumber:
            yield f"{where}.asNumber", "in model as-per-rack a host takes its rack's AS"
        if spec.model == "as-per-host" and not host.asNumber:
            yield f"{where}.asNumber", "model as-per-host needs an AS per host"
        if spec.model == "as-per-host" and host.asNumber in fabric_as:
            yield f"{where}.asNumber", f"{host.asNumber} is a ToR's, spine's or the border's AS"
        elif spec.model == "as-per-host" and host.asNumber in host_as:
            owner = f"{host_as[host.asNumber]}'s AS too"
            yield f"{where}.asNumber", f"{host.asNumber} is {owner} (as-per-host: one per host)"
        if host.asNumber:
            host_as.setdefault(host.asNumber, f"hosts[{i}]")


def _fabric_addresses(spec: LabSpec) -> Iterator[tuple[str, str, int]]:
    """(field, address, version) of everything on the fabric."""
    for i, host in enumerate(spec.hosts):
        yield f"hosts[{i}].ipv4", host.ipv4, 4
        if host.ipv6:
            yield f"hosts[{i}].ipv6", host.ipv6, 6
    for i, ext in enumerate(spec.externals):
        if ext.behind is None:
            yield from ((f"externals[{i}].ipv4", a, 4) for a in (ext.ipv4,) if a)
            yield from ((f"externals[{i}].ipv6", a, 6) for a in (ext.ipv6,) if a)
    if spec.border is not None:
        yield from (("border.ipv4", a, 4) for a in (spec.border.ipv4,) if a)
        if spec.border.ipv6:
            yield "border.ipv6", spec.border.ipv6, 6
    yield from ((field, address, 4) for field, address in _etcd_fields(spec))


def _etcd_fields(spec: LabSpec) -> Iterator[tuple[str, str]]:
    """(field, address) of every etcd member: the first is `etcd.ipv4`'s, the others follow
    from `etcd.members`."""
    for i, address in enumerate(etcd_addresses(spec)):
        yield ("etcd.ipv4" if i == 0 else "etcd.members"), address


def _check_addresses(spec: LabSpec) -> Iterator[Problem]:
    used: dict[str, str] = {}
    if spec.fabric is None:
        return  # _check_fabric says so
    for field, address, version in _fabric_addresses(spec):
        fabric = spec.fabric.ipv4 if version == 4 else spec.fabric.ipv6
        if fabric is None:
            yield field, "an IPv6 address needs fabric.ipv6"
            continue
        if ipaddress.ip_network(address, strict=False).version != version:
            yield field, f"{address!r} is not an IPv{version} address"
            continue
        iface = fabric_interface(spec, address, version)
        net = ipaddress.ip_network(fabric, strict=False)
        if iface.ip not in net or iface.ip in (net.network_address, net.broadcast_address):
            yield field, f"{address!r} is not a usable address on the fabric {net}"
        elif str(iface.ip) in used:
            yield field, f"{iface.ip} is already used by {used[str(iface.ip)]}"
        used[str(iface.ip)] = field


def _check_pools(spec: LabSpec) -> Iterator[Problem]:
    fabric = (spec.fabric.ipv4, spec.fabric.ipv6) if spec.fabric else ()
    taken = [ipaddress.ip_network(n, strict=False) for n in fabric if n]
    taken += [net for r in spec.racks for net in rack_subnets(r)]
    if spec.border is not None:
        taken += [
            ipaddress.ip_network(n, strict=False)
            for n in (spec.border.network.ipv4, spec.border.network.ipv6)
            if n
        ]
    names: set[str] = set()
    for i, pool in enumerate(spec.pools):
        name = pool_name(spec, i)
        if name in names:
            yield f"pools[{i}].name", f"pool name {name!r} is used twice"
        names.add(name)
        spec_doc = pool_spec(spec, i)
        try:
            parse_resource(
                {
                    "apiVersion": "projectcalico.org/v3",
                    "kind": "IPPool",
                    "metadata": {"name": name},
                    "spec": spec_doc,
                }
            )
        except ResourceError as exc:
            field, _, reason = str(exc).split(": ", 1)[-1].partition(": ")
            yield f"pools[{i}].{field.removeprefix('spec.')}", reason
            continue
        net = ipaddress.ip_network(pool.cidr, strict=False)
        clash = next((t for t in taken if t.version == net.version and t.overlaps(net)), None)
        if clash is not None:
            yield f"pools[{i}].cidr", f"{pool.cidr} overlaps {clash}"
        taken.append(net)


def pool_spec(spec: LabSpec, index: int) -> dict[str, Any]:
    """The IPPool spec of a lab pool."""
    pool = spec.pools[index]
    doc = pool.model_dump(exclude={"name"}, exclude_none=True)
    return {k: v for k, v in doc.items() if v is not None}


def pool_name(spec: LabSpec, index: int) -> str:
    pool = spec.pools[index]
    version = ipaddress.ip_network(pool.cidr, strict=False).version
    return pool.name or f"lab-ipv{version}-pool-{index}"


def _check_workloads(spec: LabSpec) -> Iterator[Problem]:
    hosts = {h.name for h in spec.hosts}
    if spec.workloads and not spec.pools:
        yield "pools", "workloads need at least one IP pool"
    pools = {pool_name(spec, i) for i in range(len(spec.pools))}
    for i, wl in enumerate(spec.workloads):
        if wl.host not in hosts:
            yield f"workloads[{i}].host", f"{wl.host!r} is not one of the hosts"
        for j, name in enumerate(wl.ipPools):
            if name not in pools:
                yield f"workloads[{i}].ipPools[{j}]", f"{name!r} is not one of the pools"


def _check_externals(spec: LabSpec) -> Iterator[Problem]:
    border = spec.border
    for key in ("ipv4", "ipv6"):
        value = getattr(border.network, key) if border else None
        if value and ipaddress.ip_network(value, strict=False).version != int(key[-1]):
            yield f"border.network.{key}", f"{value!r} is not an IPv{key[-1]} network"
    for i, ext in enumerate(spec.externals):
        where = f"externals[{i}]"
        if not ext.ipv4 and not ext.ipv6:
            yield where, "an external needs an ipv4 or ipv6 address"
        if ext.behind is None:
            if ext.gateway and ipaddress.ip_address(ext.gateway).version != 4:
                yield f"{where}.gateway", "must be an IPv4 address on the fabric"
            continue
        if border is None or ext.behind != border.name:
            yield f"{where}.behind", f"{ext.behind!r} is not the border router's name"
            continue
        if ext.gateway:
            yield f"{where}.gateway", "an external behind the border router uses it as gateway"
        for key in ("ipv4", "ipv6"):
            address, net = getattr(ext, key), getattr(border.network, key)
            if address and net is None:
                yield f"{where}.{key}", f"needs border.network.{key}"
            elif address and net:
                network = ipaddress.ip_network(net, strict=False)
                ip = ipaddress.ip_interface(address).ip
                if ip not in network or ip == next(network.hosts()):
                    yield f"{where}.{key}", f"{address!r} is not a free address in {network}"


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" not in part and part not in ("int", "str"):
            out += f".{part}" if out else part
    return out or "(top level)"


def _reason(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "required field is missing"
    return str(err["msg"]).removeprefix("Value error, ")
