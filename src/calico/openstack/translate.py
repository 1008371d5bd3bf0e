"""Neutron objects -> calico-py v3 resources, as networking-calico's v3 driver maps them (pure).

Dicts in (as Neutron's plugin returns ports, security groups, rules and subnets), validated
resources out; no I/O and no Neutron imports. Anything the model refuses becomes a
`TranslationError` naming the Neutron object and field.

Choices, checked against networking-calico (endpoints.py, policy.py, subnets.py):
- A port's WorkloadEndpoint carries no admin state: the v3 driver ignores `admin_state_up`
  (only the old v1 model had an active/inactive state), so an admin-down port is written as
  any other bound port.
- Allowed address pairs, as networking-calico's `endpoint_spec` (plugins/ml2/drivers/calico/
  endpoints.py, projectcalico/calico at 87c15906f20c4ca1fda55af92295e7678b0cc0b2): each pair
  goes into `ipNetworks` (so Felix routes it to the VM and lets the VM send from it) and again
  into `allowedIps` (so the DHCP agent hands out only the fixed IPs, `endpoint_fixed_ips`).
  Where networking-calico goes wrong we do not follow: a pair equal to one of the port's fixed
  IPs is left out (upstream lists it in allowedIps, and its DHCP agent then stops serving
  that fixed IP), a pair given as `a.b.c.d/32` is taken as the address (upstream writes
  `a.b.c.d/32/32`, which Felix fails to parse, dropping the endpoint), and a prefix pair (a
  /24, say), which cannot be an ipNetwork, goes into `allowSpoofedSourcePrefixes`: the VM may
  send from it, but nothing in it is routed to the VM (upstream writes `10.1.0.0/24/32`,
  dropping the endpoint).
- Security groups: each rule is one Allow rule; `types` is always [Ingress, Egress] so a
  group without egress rules denies egress (networking-calico leaves `types` out).
  `remote_address_group_id` is refused: networking-calico ignores it, which would widen the
  rule to every address.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from calico.model.endpoints import WorkloadEndpoint
from calico.model.errors import describe, show_value
from calico.model.policy import NetworkPolicy
from calico.model.rules import Rule
from calico.openstack import keys

# Label and annotation keys, as networking-calico writes them.
PROJECT_ID_LABEL = "projectcalico.org/openstack-project-id"
PROJECT_NAME_LABEL = "projectcalico.org/openstack-project-name"
PROJECT_PARENT_ID_LABEL = "projectcalico.org/openstack-project-parent-id"
NETWORK_NAME_LABEL = "projectcalico.org/openstack-network-name"
ANNOTATION_PREFIX = "openstack.projectcalico.org/"
NETWORK_ID_ANNOTATION = ANNOTATION_PREFIX + "network-id"
FQDN_ANNOTATION = ANNOTATION_PREFIX + "fqdn"

LABEL_MAX_LENGTH = 63
# networking-calico budgets the whole `sg-name.projectcalico.org/openstack-` prefix against
# 63 characters, leaving 27 for the name; keep that so labels match its.
SG_NAME_MAX_LENGTH = LABEL_MAX_LENGTH - len(keys.SG_NAME_LABEL_PREFIX)

# Neutron's protocol names (neutron_lib.constants.IP_PROTOCOL_MAP) without a Calico name.
_PROTOCOL_NUMBERS = {
    "ah": 51,
    "dccp": 33,
    "egp": 8,
    "esp": 50,
    "gre": 47,
    "igmp": 2,
    "ipip": 4,
    "ipv6-encap": 41,
    "ipv6-frag": 44,
    "ipv6-nonxt": 59,
    "ipv6-opts": 60,
    "ipv6-route": 43,
    "ospf": 89,
    "pgm": 113,
    "rsvp": 46,
    "vrrp": 112,
}
_PROTOCOL_NAMES = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP", "udplite": "UDPLite"}
# Neutron spells "any protocol" as null, "any", 0 or (legacy) -1.
_ANY_PROTOCOL = {"any", "0", "-1"}
_ICMPV6 = {"ipv6-icmp", "icmpv6", "58"}
_ETHERTYPES = {"IPv4": 4, "IPv6": 6}


class TranslationError(ValueError):
    """A Neutron object that cannot become a valid resource; the message names it and the
    field at fault."""


@dataclass(frozen=True, slots=True)
class PortExtras:
    """What a port's endpoint needs beyond the port dict.

    Names are given raw (as Neutron and Keystone hold them); they are sanitised into label
    values here.
    """

    subnets: Mapping[str, Mapping[str, Any]]  # subnet id -> Neutron subnet dict
    security_group_names: Mapping[str, str] = field(default_factory=dict)  # sg id -> name
    network_name: str | None = None
    project_name: str | None = None
    project_parent_id: str | None = None
    # Neutron floatingip dicts whose fixed_port_id is this port.
    floating_ips: Sequence[Mapping[str, Any]] = ()
    fqdn: str | None = None  # overrides the port's dns_assignment


def is_endpoint_port(port: Mapping[str, Any]) -> bool:
    """VM ports only: networking-calico's Kuryr `kuryr:container` owner is long gone."""
    return str(port.get("device_owner") or "").startswith("compute:")


def port_host(port: Mapping[str, Any]) -> str | None:
    """The host a port is bound to, or None while unbound (networking-calico's port_bound:
    vif_type "unbound" means not bound even when a host is already named)."""
    host = port.get("binding:host_id")
    if not host or port.get("binding:vif_type") == "unbound":
        return None
    return str(host)


# --- labels ---------------------------------------------------------------------------------

_LABEL_BAD_CHARS = re.compile(r"[^-_.A-Za-z0-9]")
_NOT_ALNUM_EDGES = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")


def sanitize_label_value(value: str, max_length: int = LABEL_MAX_LENGTH) -> str:
    """networking-calico's sanitising: truncate, replace disallowed characters with '_', then
    strip non-alphanumerics from both ends (so the result may be shorter, or empty)."""
    return _NOT_ALNUM_EDGES.sub("", _LABEL_BAD_CHARS.sub("_", value[:max_length]))


def _endpoint_labels(port: Mapping[str, Any], extras: PortExtras, port_id: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    sg_ids = port.get("security_groups") or []
    if not isinstance(sg_ids, list) or not all(isinstance(sg, str) for sg in sg_ids):
        raise _port_error(port_id, "security_groups", f"{show_value(sg_ids)} is not a list of ids")
    for sg_id in sg_ids:
        name = sanitize_label_value(
            extras.security_group_names.get(sg_id) or "", SG_NAME_MAX_LENGTH
        )
        labels[keys.sg_label(sg_id)] = name
        if name:
            labels[keys.SG_NAME_LABEL_PREFIX + name] = sg_id
    project_id = port.get("project_id") or port.get("tenant_id")
    if project_id:
        labels[PROJECT_ID_LABEL] = sanitize_label_value(str(project_id))
    if extras.project_name is not None:
        labels[PROJECT_NAME_LABEL] = sanitize_label_value(extras.project_name)
    if extras.project_parent_id:
        labels[PROJECT_PARENT_ID_LABEL] = sanitize_label_value(extras.project_parent_id)
    if extras.network_name is not None:
        labels[NETWORK_NAME_LABEL] = sanitize_label_value(extras.network_name)
    return labels


# --- endpoints ------------------------------------------------------------------------------

# Which port field to blame for a model complaint about a WorkloadEndpoint path.
_ENDPOINT_FIELDS = (
    ("metadata.name", "binding:host_id/device_id/id"),
    ("metadata.labels", "security_groups/project/network name labels"),
    ("metadata.annotations", "network_id/dns_assignment"),
    ("spec.node", "binding:host_id"),
    ("spec.mac", "mac_address"),
    ("spec.interfaceName", "id"),
    ("spec.ipNetworks", "fixed_ips/allowed_address_pairs"),
    ("spec.allowedIps", "allowed_address_pairs"),
    ("spec.allowSpoofedSourcePrefixes", "allowed_address_pairs"),
    ("spec.ipv4Gateway", "fixed_ips (subnet gateway_ip)"),
    ("spec.ipv6Gateway", "fixed_ips (subnet gateway_ip)"),
    ("spec.ipNATs", "floating_ips"),
)


def _port_error(port_id: str, where: str, reason: str) -> TranslationError:
    return TranslationError(f"port {port_id}: {where}: {reason}")


def _records(value: Any, port_id: str, where: str) -> list[Mapping[str, Any]]:
    """A list of Neutron records (fixed_ips, allowed_address_pairs, ...); absent is empty, any
    other shape a TranslationError naming the field."""
    records = value or []
    if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
        raise _port_error(port_id, where, f"{show_value(value)} is not a list of objects")
    return records


def _address(text: Any, port_id: str, where: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(text))
    except ValueError:
        raise _port_error(port_id, where, f"{text!r} is not an IP address") from None


def _single(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"{addr}/{addr.max_prefixlen}"


def endpoint_for_port(
    port: Mapping[str, Any], extras: PortExtras, region: str | None
) -> WorkloadEndpoint:
    """The WorkloadEndpoint for a bound VM port (TranslationError for any other port)."""
    port_id = str(port.get("id") or "")
    if not port_id:
        raise TranslationError("port: id: required field is missing")
    if not is_endpoint_port(port):
        raise _port_error(
            port_id, "device_owner", f"{port.get('device_owner')!r} is not a compute: port"
        )
    host = port_host(port)
    if host is None:
        raise _port_error(port_id, "binding:host_id", "port is not bound to a host")
    device_id = str(port.get("device_id") or "")
    if not device_id:
        raise _port_error(port_id, "device_id", "required field is missing")
    namespace = keys.endpoint_namespace(region)

    spec: dict[str, Any] = {
        "orchestrator": keys.ORCHESTRATOR,
        "workload": device_id,
        "node": host,
        "endpoint": port_id,
        "interfaceName": keys.interface_name(port_id),
        "mac": port.get("mac_address"),
    }
    networks: list[str] = []
    fixed_ips = [
        (i, fixed, _address(fixed.get("ip_address"), port_id, f"fixed_ips[{i}].ip_address"))
        for i, fixed in enumerate(_records(port.get("fixed_ips"), port_id, "fixed_ips"))
    ]
    # Neutron's DB does not order a port's fixed IPs; sorting keeps the endpoint (and the
    # gateway choice below) identical however they come, so a resync never rewrites it.
    fixed_ips.sort(key=lambda item: (item[2].version, int(item[2])))
    for i, fixed, addr in fixed_ips:
        if _single(addr) not in networks:
            networks.append(_single(addr))
        subnet_id = fixed.get("subnet_id")
        subnet = extras.subnets.get(subnet_id) if isinstance(subnet_id, str) else None
        if not isinstance(subnet, Mapping):
            raise _port_error(
                port_id, f"fixed_ips[{i}].subnet_id", f"subnet {fixed.get('subnet_id')!r} unknown"
            )
        # As networking-calico: the last fixed IP of each family with a gateway sets it.
        gateway = subnet.get("gateway_ip")
        if gateway:
            gw = _address(gateway, port_id, f"fixed_ips[{i}] subnet gateway_ip")
            spec["ipv6Gateway" if gw.version == 6 else "ipv4Gateway"] = str(gw)
    fixed_count = len(networks)
    allowed: list[str] = []
    spoofable: list[str] = []
    pairs = _records(port.get("allowed_address_pairs"), port_id, "allowed_address_pairs")
    for i, pair in enumerate(pairs):
        text = str(pair.get("ip_address"))
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise _port_error(
                port_id, f"allowed_address_pairs[{i}].ip_address", f"{text!r} is not an IP or CIDR"
            ) from None
        if net.num_addresses > 1:
            if str(net) not in spoofable:
                spoofable.append(str(net))
            continue
        single = _single(net.network_address)
        if single in networks[:fixed_count] or single in allowed:
            continue  # the port's own address, or a repeat
        networks.append(single)
        allowed.append(single)
    spec["ipNetworks"] = networks
    if allowed:
        spec["allowedIps"] = allowed
    if spoofable:
        spec["allowSpoofedSourcePrefixes"] = spoofable

    nats: list[dict[str, str]] = []
    for i, fip in enumerate(_records(list(extras.floating_ips), port_id, "floating_ips")):
        internal = fip.get("fixed_ip_address")
        if not internal:
            continue  # disassociated
        inner = _address(internal, port_id, f"floating_ips[{i}].fixed_ip_address")
        outer = _address(
            fip.get("floating_ip_address"), port_id, f"floating_ips[{i}].floating_ip_address"
        )
        # Only NAT to an address the endpoint has; a stale association is dropped.
        if _single(inner) in networks:
            nats.append({"internalIP": str(inner), "externalIP": str(outer)})
    if nats:
        spec["ipNATs"] = nats

    annotations: dict[str, str] = {}
    if port.get("network_id"):
        annotations[NETWORK_ID_ANNOTATION] = str(port["network_id"])
    fqdn = extras.fqdn
    dns = _records(port.get("dns_assignment"), port_id, "dns_assignment")
    if fqdn is None and dns:
        fqdn = dns[0].get("fqdn")  # Neutron repeats the same FQDN for every fixed IP
    if fqdn:
        annotations[FQDN_ANNOTATION] = str(fqdn)

    data = {
        "metadata": {
            "name": keys.endpoint_name(host, device_id, port_id),
            "namespace": namespace,
            "labels": _endpoint_labels(port, extras, port_id),
            "annotations": annotations,
        },
        "spec": spec,
    }
    try:
        return WorkloadEndpoint.model_validate(data)
    except ValidationError as exc:
        path, reason = describe(exc.errors()[0])
        blamed = next((f for p, f in _ENDPOINT_FIELDS if path.startswith(p)), path)
        raise _port_error(port_id, f"{blamed} ({path})", reason) from None


def endpoint_fixed_ips(endpoint: WorkloadEndpoint) -> list[str]:
    """The endpoint's fixed IPs (what DHCP should hand out): its ipNetworks that are not
    allowed address pairs (allowedIps), compared as addresses, as networking-calico's agent
    compares them."""
    extra = {ipaddress.ip_interface(n).ip for n in endpoint.spec.allowedIps or []}
    addresses = (n.split("/")[0] for n in endpoint.spec.ipNetworks or [])
    return [a for a in addresses if ipaddress.ip_address(a) not in extra]


# --- security groups ------------------------------------------------------------------------

# Which Neutron rule field to blame for a model complaint about a Calico rule path.
_RULE_FIELDS = (
    ("ipVersion", "ethertype/protocol"),
    ("protocol", "protocol"),
    ("icmp", "port_range_min/port_range_max (ICMP type/code)"),
    ("source.nets", "remote_ip_prefix"),
    ("destination.nets", "remote_ip_prefix"),
    ("source.selector", "remote_group_id"),
    ("destination.selector", "remote_group_id"),
    ("destination.ports", "port_range_min/port_range_max"),
)


class _RuleError(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _rule_protocol(rule: Mapping[str, Any], version: int) -> tuple[int | str | None, bool]:
    """(Calico protocol, whether it is ICMP) for a Neutron rule's protocol."""
    raw = rule.get("protocol")
    if raw is None:
        return None, False
    text = str(raw).strip().lower()
    if text in _ANY_PROTOCOL:
        return None, False
    if text in ("icmp", "1"):
        # Neutron has long let "icmp" stand for ICMPv6 in an IPv6 rule.
        return ("ICMPv6" if version == 6 else "ICMP"), True
    if text in _ICMPV6:
        return "ICMPv6", True
    if text in _PROTOCOL_NAMES:
        return _PROTOCOL_NAMES[text], False
    if text in _PROTOCOL_NUMBERS:
        return _PROTOCOL_NUMBERS[text], False
    if text.isdigit() and 1 <= int(text) <= 255:
        return int(text), False
    raise _RuleError("protocol", f"{raw!r} is not a known protocol name or number 0-255")


def _optional_int(rule: Mapping[str, Any], name: str) -> int | None:
    value = rule.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _RuleError(name, f"{value!r} is not an integer")
    try:
        return int(value)
    except ValueError:
        raise _RuleError(name, f"{value!r} is not an integer") from None


def _calico_rule(rule: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """("ingress"|"egress", Calico rule dict) for one Neutron rule."""
    direction = rule.get("direction")
    if direction not in ("ingress", "egress"):
        raise _RuleError("direction", f"{direction!r} is not ingress or egress")
    ethertype = rule.get("ethertype")
    if not isinstance(ethertype, str) or ethertype not in _ETHERTYPES:
        raise _RuleError("ethertype", f"{ethertype!r} is not IPv4 or IPv6")
    if rule.get("remote_address_group_id"):
        raise _RuleError(
            "remote_address_group_id", "address groups are not supported by Calico's driver"
        )
    version = _ETHERTYPES[ethertype]
    out: dict[str, Any] = {"action": "Allow", "ipVersion": version}
    protocol, is_icmp = _rule_protocol(rule, version)
    if protocol is not None:
        out["protocol"] = protocol

    low = _optional_int(rule, "port_range_min")
    high = _optional_int(rule, "port_range_max")
    ports: list[int | str] = []
    if is_icmp:
        # Neutron keeps the ICMP type in port_range_min and the code in port_range_max;
        # -1 (old clients) means "any", like null.
        icmp = {k: v for k, v in (("type", low), ("code", high)) if v is not None and v != -1}
        if icmp:
            out["icmp"] = icmp
    elif low is not None and low != -1:
        ports = [low] if high is None or high == low else [f"{low}:{high}"]
    elif high is not None and high != -1:
        raise _RuleError("port_range_min", "port_range_max is set without port_range_min")

    peer: dict[str, Any] = {}
    if rule.get("remote_group_id"):
        peer["selector"] = f"has({keys.sg_label(str(rule['remote_group_id']))})"
    prefix = rule.get("remote_ip_prefix")
    if prefix:
        try:
            # Neutron matches the prefix's network (its normalized_cidr); Calico wants it masked.
            peer["nets"] = [str(ipaddress.ip_network(str(prefix), strict=False))]
        except ValueError:
            raise _RuleError("remote_ip_prefix", f"{prefix!r} is not a CIDR") from None
    if direction == "ingress":
        if peer:
            out["source"] = peer
        if ports:
            out["destination"] = {"ports": ports}
    else:
        if ports:
            peer["ports"] = ports
        if peer:
            out["destination"] = peer
    return direction, out


def policy_for_security_group(
    sg: Mapping[str, Any], rules: Sequence[Mapping[str, Any]], region: str | None
) -> NetworkPolicy:
    """The NetworkPolicy for a security group. `rules` may hold other groups' rules too (as
    a batch fetch returns them); only those whose security_group_id is this group's count."""
    sg_id = str(sg.get("id") or "")
    if not sg_id:
        raise TranslationError("security group: id: required field is missing")
    ingress: list[dict[str, Any]] = []
    egress: list[dict[str, Any]] = []
    for rule in rules:
        if rule.get("security_group_id", sg_id) != sg_id:
            continue
        where = f"security group {sg_id} rule {rule.get('id')}"
        try:
            direction, calico = _calico_rule(rule)
        except _RuleError as err:
            raise TranslationError(f"{where}: {err.field}: {err.reason}") from None
        try:
            Rule.model_validate(calico)
        except ValidationError as exc:
            path, reason = describe(exc.errors()[0])
            blamed = next((f for p, f in _RULE_FIELDS if path.startswith(p)), path)
            raise TranslationError(f"{where}: {blamed} ({path}): {reason}") from None
        (ingress if direction == "ingress" else egress).append(calico)
    data = {
        "metadata": {"name": keys.policy_name(sg_id), "namespace": keys.endpoint_namespace(region)},
        "spec": {
            "selector": f"has({keys.sg_label(sg_id)})",
            "types": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }
    try:
        return NetworkPolicy.model_validate(data)
    except ValidationError as exc:
        path, reason = describe(exc.errors()[0])
        raise TranslationError(f"security group {sg_id}: id ({path}): {reason}") from None


# --- subnets --------------------------------------------------------------------------------


def dhcp_subnet_data(subnet: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record networking-calico writes at keys.subnet_key for its DHCP agent, or None
    when the subnet has DHCP disabled (the key should then be absent)."""
    if not subnet.get("enable_dhcp"):
        return None
    subnet_id = subnet.get("id")
    try:
        # As netaddr prints it: host bits kept, IPv6 compressed, a bare address as /32 or /128.
        cidr = ipaddress.ip_interface(str(subnet.get("cidr"))).with_prefixlen
    except ValueError:
        raise TranslationError(
            f"subnet {subnet_id}: cidr: {subnet.get('cidr')!r} is not a CIDR"
        ) from None
    data: dict[str, Any] = {
        "network_id": subnet.get("network_id"),
        "cidr": cidr,
        "host_routes": [dict(route) for route in subnet.get("host_routes") or []],
        "gateway_ip": subnet.get("gateway_ip"),
    }
    if subnet.get("dns_nameservers"):
        data["dns_servers"] = list(subnet["dns_nameservers"])
    # The agent needs both modes to choose SLAAC vs DHCPv6; networking-calico sends neither
    # unless both are set.
    if subnet.get("ipv6_ra_mode") and subnet.get("ipv6_address_mode"):
        data["ipv6_ra_mode"] = subnet["ipv6_ra_mode"]
        data["ipv6_address_mode"] = subnet["ipv6_address_mode"]
    return data
