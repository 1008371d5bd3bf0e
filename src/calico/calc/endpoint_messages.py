"""Local endpoint resources + resolved tiers -> dataplane endpoint messages (pure)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from calico.calc.items import normalise_cidr
from calico.calc.messages import (
    HostEndpoint,
    HostEndpointID,
    NatMapping,
    TierInfo,
    WorkloadEndpoint,
    WorkloadEndpointID,
)
from calico.model import endpoints as model

if TYPE_CHECKING:  # the policy resolver builds messages with these functions
    from calico.calc.policy_resolver import HostTiers


def _split(cidrs: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Normalised CIDRs by family (only IPv6 ones have colons)."""
    v4 = tuple(c for c in cidrs if ":" not in c)
    v6 = tuple(c for c in cidrs if ":" in c)
    return v4, v6


def nats_apply(floating_ips: bool, orchestrator: str | None) -> bool:
    """Whether Felix programs an endpoint's NAT mappings (floating IPs): with FloatingIPs
    Enabled, and always for OpenStack endpoints (as Felix)."""
    return floating_ips or orchestrator == "openstack"


def workload_endpoint_id(wep: model.WorkloadEndpoint) -> WorkloadEndpointID:
    return WorkloadEndpointID(wep.namespace or "default", wep.name)


def workload_endpoint_message(
    wep: model.WorkloadEndpoint, tiers: tuple[TierInfo, ...]
) -> WorkloadEndpoint:
    spec = wep.spec
    v4, v6 = _split([normalise_cidr(n) for n in spec.ipNetworks or []])
    nats = [NatMapping(n.internalIP, n.externalIP) for n in spec.ipNATs or []]
    return WorkloadEndpoint(
        interface_name=spec.interfaceName or "",
        mac=spec.mac,
        ipv4_nets=v4,
        ipv6_nets=v6,
        profile_ids=tuple(spec.profiles or ()),
        tiers=tiers,
        ipv4_nats=tuple(n for n in nats if ipaddress.ip_address(n.internal_ip).version == 4),
        ipv6_nats=tuple(n for n in nats if ipaddress.ip_address(n.internal_ip).version == 6),
        allow_spoofed_source_prefixes=tuple(
            normalise_cidr(p) for p in spec.allowSpoofedSourcePrefixes or []
        ),
        orchestrator=spec.orchestrator or "",
        workload=(spec.pod if spec.orchestrator == "k8s" else spec.workload) or "",
        endpoint=spec.endpoint or "",
    )


def host_endpoint_id(hep: model.HostEndpoint) -> HostEndpointID:
    return HostEndpointID(hep.name)


def host_endpoint_message(hep: model.HostEndpoint, tiers: HostTiers) -> HostEndpoint:
    spec = hep.spec
    addresses = list(spec.expectedIPs or [])
    v4 = tuple(a for a in addresses if ipaddress.ip_address(a).version == 4)
    v6 = tuple(a for a in addresses if ipaddress.ip_address(a).version == 6)
    return HostEndpoint(
        interface_name=spec.interfaceName or None,
        expected_ipv4_addrs=v4,
        expected_ipv6_addrs=v6,
        profile_ids=tuple(spec.profiles or ()),
        tiers=tiers.normal,
        untracked_tiers=tiers.untracked,
        pre_dnat_tiers=tiers.pre_dnat,
        forward_tiers=tiers.forward,
    )
