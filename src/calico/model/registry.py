"""The kinds calico-py knows: class by kind name, etcd plural, and calicoctl's aliases."""

from __future__ import annotations

from calico.model.base import Resource
from calico.model.endpoints import HostEndpoint, WorkloadEndpoint
from calico.model.felixconfig import FelixConfiguration
from calico.model.network import (
    BGPConfiguration,
    BGPPeer,
    ClusterInformation,
    IPAMConfiguration,
    IPPool,
    Node,
)
from calico.model.policy import (
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    NetworkPolicy,
    NetworkSet,
    Profile,
    Tier,
)

KINDS: dict[str, type[Resource]] = {
    cls.KIND: cls
    for cls in (
        WorkloadEndpoint,
        HostEndpoint,
        Profile,
        NetworkPolicy,
        GlobalNetworkPolicy,
        Tier,
        NetworkSet,
        GlobalNetworkSet,
        IPPool,
        IPAMConfiguration,
        BGPPeer,
        BGPConfiguration,
        FelixConfiguration,
        Node,
        ClusterInformation,
    )
}

# calicoctl's short names, as in its resource manager.
_ALIASES: dict[str, tuple[str, ...]] = {
    "BGPConfiguration": ("bgpconfig", "bgpconfigs"),
    "BGPPeer": ("bgpp", "bgpps", "bp", "bps"),
    "ClusterInformation": ("clusterinfo", "clusterinfos"),
    "FelixConfiguration": ("felixconfig", "felixconfigs"),
    "GlobalNetworkPolicy": ("gnp", "gnps", "cgnp"),
    "GlobalNetworkSet": ("gns",),
    "HostEndpoint": ("hep", "heps"),
    "IPPool": ("ipp", "ipps", "pool", "pools"),
    "IPAMConfiguration": ("ipamconfig", "ipamconfigs"),
    "NetworkPolicy": ("np", "nps", "policy", "policies", "pol", "pols", "cnp"),
    "NetworkSet": ("netset", "netsets"),
    "Node": ("no", "nos"),
    "Profile": ("pro", "pros"),
    "Tier": (),
    "WorkloadEndpoint": ("wep", "weps"),
}

_LOOKUP: dict[str, type[Resource]] = {}
for _kind, _cls in KINDS.items():
    for _alias in (_kind.lower(), _cls.PLURAL, *_ALIASES[_kind]):
        _LOOKUP[_alias] = _cls


def kind_for(text: str) -> type[Resource]:
    """Resolve a kind name, plural or alias (any case) to its resource class."""
    cls = _LOOKUP.get(text.lower())
    if cls is None:
        raise ValueError(f"resource type {text!r} is not supported")
    return cls


def by_plural(plural: str) -> type[Resource] | None:
    for cls in KINDS.values():
        if plural == cls.PLURAL:
            return cls
    return None
