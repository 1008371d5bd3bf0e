"""Cluster networking resources: IPPool, IPAMConfiguration, BGPPeer, BGPConfiguration,
Node and ClusterInformation, with Calico's validation and defaults.
"""

from __future__ import annotations

import ipaddress
import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from calico.model.base import Model, Resource
from calico.model.errors import FieldError
from calico.model.fields import (
    CIDR,
    MAC,
    SELECT_ALL,
    ASNumber,
    Duration,
    InterfaceName,
    IPAddress,
    Name,
    Selector,
    parse_network,
)

EncapMode = Literal["Never", "Always", "CrossSubnet"]
_IPV4_LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")
_IPV6_LINK_LOCAL = ipaddress.ip_network("fe80::/10")
_PEER_IP_PORT = re.compile(r"^(\d+\.\d+\.\d+\.\d+):(\d+)$|^\[([0-9a-fA-F:.]+)\]:(\d+)$")
_COMMUNITY = re.compile(r"^\d+:\d+(:\d+)?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")  # Kubernetes' data key rule


def _only_default(resource: Resource) -> str | None:
    if resource.name != "default":
        return f"{resource.KIND} must be named 'default', not {resource.name!r}"
    return None


def _default_or_node(resource: Resource) -> str | None:
    problem = Resource.check_name(resource)
    if problem is None and resource.name != "default" and not resource.name.startswith("node."):
        return f"{resource.name!r}: {resource.KIND} must be named 'default' or 'node.<nodename>'"
    return problem


class IPPoolSpec(Model):
    cidr: CIDR
    vxlanMode: EncapMode | None = None
    ipipMode: EncapMode | None = None
    natOutgoing: bool | None = None
    disabled: bool | None = None
    disableBGPExport: bool | None = None
    blockSize: int | None = None
    nodeSelector: Selector | None = None
    namespaceSelector: Selector | None = None
    allowedUses: list[Literal["Workload", "Tunnel", "LoadBalancer"]] | None = None
    assignmentMode: Literal["Automatic", "Manual"] | None = None


class IPPool(Resource):
    KIND: ClassVar[str] = "IPPool"
    PLURAL: ClassVar[str] = "ippools"
    spec: IPPoolSpec

    def check_spec(self) -> None:
        spec = self.spec
        net = parse_network(spec.cidr)
        if str(ipaddress.ip_address(spec.cidr.split("/")[0])) != str(net.network_address):
            raise FieldError("spec.cidr", f"{spec.cidr!r} is not strictly masked (use {net})")
        if net.overlaps(_IPV4_LINK_LOCAL if net.version == 4 else _IPV6_LINK_LOCAL):
            raise FieldError("spec.cidr", f"{spec.cidr!r} overlaps the link-local range")
        low, high = (20, 32) if net.version == 4 else (116, 128)
        if spec.blockSize is not None and not low <= spec.blockSize <= high:
            raise FieldError(
                "spec.blockSize", f"must be between {low} and {high} for an IPv{net.version} pool"
            )
        block = spec.blockSize or (26 if net.version == 4 else 122)
        if not spec.disabled and net.prefixlen > block:
            raise FieldError(
                "spec.cidr", f"pool /{net.prefixlen} is smaller than its block size /{block}"
            )
        uses = spec.allowedUses or []
        if "LoadBalancer" in uses and len(uses) > 1:
            raise FieldError("spec.allowedUses", "LoadBalancer cannot be combined with other uses")

    def apply_defaults(self) -> None:
        spec = self.spec
        net = parse_network(spec.cidr)
        spec.cidr = str(net)
        if spec.blockSize is None:
            spec.blockSize = 26 if net.version == 4 else 122
        spec.ipipMode = spec.ipipMode or "Never"
        spec.vxlanMode = spec.vxlanMode or "Never"
        spec.nodeSelector = spec.nodeSelector or SELECT_ALL
        spec.allowedUses = spec.allowedUses or ["Workload", "Tunnel"]
        spec.assignmentMode = spec.assignmentMode or "Automatic"


class IPAMConfigurationSpec(Model):
    strictAffinity: bool | None = None
    maxBlocksPerHost: int | None = Field(default=None, ge=0)
    autoAllocateBlocks: bool | None = None
    kubeVirtVMAddressPersistence: Literal["Enabled", "Disabled"] | None = None
    ipCooldownSeconds: int | None = Field(default=None, ge=0, le=1200)


class IPAMConfiguration(Resource):
    KIND: ClassVar[str] = "IPAMConfiguration"
    PLURAL: ClassVar[str] = "ipamconfigurations"
    spec: IPAMConfigurationSpec = Field(default_factory=IPAMConfigurationSpec)

    def check_name(self) -> str | None:
        return _only_default(self)

    def apply_defaults(self) -> None:
        if self.spec.strictAffinity is None:
            self.spec.strictAffinity = False
        if self.spec.autoAllocateBlocks is None:
            self.spec.autoAllocateBlocks = True


class SecretKeyRef(Model):
    """A Kubernetes SecretKeySelector; calico-py reads it as the file <secrets dir>/<name>/<key>
    on the node (calico.bgp.secrets), so both parts must be safe path components."""

    name: Name
    key: str
    optional: bool | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not _SECRET_KEY.match(value) or value in (".", ".."):
            raise ValueError(
                f"{value!r} is not a valid secret key: letters, digits, '-', '_' or '.'"
            )
        return value


class BGPPassword(Model):
    secretKeyRef: SecretKeyRef | None = None


class BGPPeerSpec(Model):
    node: str | None = None
    nodeSelector: Selector | None = None
    peerIP: str | None = None
    asNumber: ASNumber | None = None
    localASNumber: ASNumber | None = None
    peerSelector: Selector | None = None
    localWorkloadSelector: Selector | None = None
    keepOriginalNextHop: bool | None = None
    nextHopMode: Literal["Auto", "Self", "Keep"] | None = None
    password: BGPPassword | None = None
    sourceAddress: Literal["UseNodeIP", "None"] | None = None
    failureDetectionMode: Literal["None", "BFDIfDirectlyConnected"] | None = None
    restartMode: Literal["GracefulRestart", "LongLivedGracefulRestart"] | None = None
    maxRestartTime: Duration | None = None
    birdGatewayMode: Literal["Recursive", "DirectIfDirectlyConnected"] | None = None
    numAllowedLocalASNumbers: int | None = Field(default=None, ge=0)
    ttlSecurity: int | None = Field(default=None, ge=0, le=255)
    keepaliveTime: Duration | None = None
    reachableBy: IPAddress | None = None
    filters: list[str] | None = None
    reversePeering: Literal["Auto", "Manual"] | None = None

    @field_validator("peerIP")
    @classmethod
    def _peer_ip(cls, value: str | None) -> str | None:
        if value is None:
            return value
        match = _PEER_IP_PORT.match(value)
        host = (match.group(1) or match.group(3)) if match else value
        port = int(match.group(2) or match.group(4)) if match else 1
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f'{value!r} is not a valid peer IP ("<ip>", "<ipv4>:<port>" or "[<ipv6>]:<port>")'
            ) from None
        if not 1 <= port <= 65535:
            raise ValueError(f"{value!r} has an invalid port")
        return value


class BGPPeer(Resource):
    KIND: ClassVar[str] = "BGPPeer"
    PLURAL: ClassVar[str] = "bgppeers"
    spec: BGPPeerSpec = Field(default_factory=BGPPeerSpec)

    def check_spec(self) -> None:
        s = self.spec
        if s.node and s.nodeSelector:
            raise FieldError("spec.node", "must be empty when nodeSelector is specified")
        if s.peerIP and s.peerSelector:
            raise FieldError("spec.peerIP", "must be empty when peerSelector is specified")
        if s.asNumber and s.peerSelector:
            raise FieldError("spec.asNumber", "must be empty when peerSelector is specified")
        if not s.peerIP and not s.peerSelector and not s.localWorkloadSelector:
            raise FieldError(
                "spec.peerIP", "one of peerIP, peerSelector or localWorkloadSelector is required"
            )
        if s.peerIP and not s.asNumber:
            raise FieldError("spec.asNumber", "required when peerIP is specified")
        if s.keepOriginalNextHop and s.nextHopMode is not None:
            raise FieldError("spec.keepOriginalNextHop", "must not be true when nextHopMode is set")
        if s.reachableBy and not s.peerIP:
            raise FieldError("spec.reachableBy", "must be empty when peerIP is empty")


class Community(Model):
    name: str
    value: str

    @field_validator("value")
    @classmethod
    def _community(cls, value: str) -> str:
        if not _COMMUNITY.match(value):
            raise ValueError(f'{value!r} is not a valid BGP community ("aa:nn" or "aa:nn:mm")')
        return value


class PrefixAdvertisement(Model):
    cidr: CIDR
    communities: list[str] | None = None


class ServiceIPBlock(Model):
    cidr: CIDR


class BGPConfigurationSpec(Model):
    logSeverityScreen: Literal["Trace", "Debug", "Info", "Warning", "Error", "Fatal"] | None = None
    nodeToNodeMeshEnabled: bool | None = None
    asNumber: ASNumber | None = None
    serviceLoadBalancerIPs: list[ServiceIPBlock] | None = None
    serviceExternalIPs: list[ServiceIPBlock] | None = None
    serviceClusterIPs: list[ServiceIPBlock] | None = None
    communities: list[Community] | None = None
    prefixAdvertisements: list[PrefixAdvertisement] | None = None
    listenPort: int | None = Field(default=None, ge=1, le=65535)
    nodeMeshPassword: BGPPassword | None = None
    nodeMeshMaxRestartTime: Duration | None = None
    bindMode: Literal["None", "NodeIP"] | None = None
    ignoredInterfaces: list[str] | None = None
    localWorkloadPeeringIPV4: IPAddress | None = None
    localWorkloadPeeringIPV6: IPAddress | None = None
    programClusterRoutes: Literal["Enabled", "Disabled"] | None = None
    ipv4NormalRoutePriority: int | None = Field(default=None, ge=1, le=2147483646)
    ipv6NormalRoutePriority: int | None = Field(default=None, ge=1, le=2147483646)
    nodeMeshMaxRestartTimeSeconds: int | None = None
    serviceLoadBalancerAggregation: Literal["Enabled", "Disabled"] | None = None


class BGPConfiguration(Resource):
    KIND: ClassVar[str] = "BGPConfiguration"
    PLURAL: ClassVar[str] = "bgpconfigurations"
    spec: BGPConfigurationSpec = Field(default_factory=BGPConfigurationSpec)

    def check_name(self) -> str | None:
        return _default_or_node(self)

    def check_spec(self) -> None:
        s = self.spec
        names = {c.name for c in s.communities or []}
        if s.communities and not s.prefixAdvertisements:
            raise FieldError(
                "spec.communities", "defined but not used in spec.prefixAdvertisements"
            )
        for i, adv in enumerate(s.prefixAdvertisements or []):
            for value in adv.communities or []:
                if value not in names and not _COMMUNITY.match(value):
                    raise FieldError(
                        f"spec.prefixAdvertisements.{i}.communities",
                        f"{value!r} is invalid or not defined",
                    )
        if s.nodeToNodeMeshEnabled is False and (s.nodeMeshPassword or s.nodeMeshMaxRestartTime):
            raise FieldError(
                "spec.nodeMeshPassword", "cannot be set when nodeToNodeMeshEnabled is false"
            )


class NodeBGPSpec(Model):
    asNumber: ASNumber | None = None
    ipv4Address: CIDR | None = None
    ipv6Address: CIDR | None = None
    ipv4IPIPTunnelAddr: IPAddress | None = None
    routeReflectorClusterID: IPAddress | None = None


class OrchRef(Model):
    nodeName: str | None = None
    orchestrator: str


class NodeAddress(Model):
    address: str
    type: Literal["CalicoNodeIP", "InternalIP", "ExternalIP"] | None = None


class NodeInterface(Model):
    name: InterfaceName | None = None
    addresses: list[str] | None = None


class NodeWireguardSpec(Model):
    interfaceIPv4Address: IPAddress | None = None
    interfaceIPv6Address: IPAddress | None = None


class NodeSpec(Model):
    bgp: NodeBGPSpec | None = None
    ipv4VXLANTunnelAddr: IPAddress | None = None
    vxlanTunnelMACAddr: MAC | None = None
    ipv6VXLANTunnelAddr: IPAddress | None = None
    vxlanTunnelMACAddrV6: MAC | None = None
    orchRefs: list[OrchRef] | None = None
    wireguard: NodeWireguardSpec | None = None
    addresses: list[NodeAddress] | None = None
    interfaces: list[NodeInterface] | None = None


class Node(Resource):
    KIND: ClassVar[str] = "Node"
    PLURAL: ClassVar[str] = "nodes"
    spec: NodeSpec = Field(default_factory=NodeSpec)
    status: dict[str, object] | None = None

    def check_spec(self) -> None:
        bgp = self.spec.bgp
        if bgp is not None and not bgp.model_dump(exclude_none=True):
            raise FieldError("spec.bgp", "should not be empty")
        for field, version in (("ipv4Address", 4), ("ipv6Address", 6)):
            value = getattr(bgp, field) if bgp is not None else None
            if value is not None and parse_network(value).version != version:
                raise FieldError(f"spec.bgp.{field}", f"{value!r} is not an IPv{version} address")
        cluster_id = bgp.routeReflectorClusterID if bgp is not None else None
        if cluster_id is not None and ipaddress.ip_address(cluster_id).version != 4:
            # BGP cluster IDs are 32-bit, written in IPv4 form (Calico's `ipv4` validator).
            raise FieldError("spec.bgp.routeReflectorClusterID", f"{cluster_id!r} is not IPv4")
        for field, version in (("ipv4VXLANTunnelAddr", 4), ("ipv6VXLANTunnelAddr", 6)):
            value = getattr(self.spec, field)
            if value is not None and ipaddress.ip_address(value).version != version:
                raise FieldError(f"spec.{field}", f"{value!r} is not an IPv{version} address")


class ClusterInformationSpec(Model):
    clusterGUID: str | None = None
    clusterType: str | None = None
    calicoVersion: str | None = None
    datastoreReady: bool | None = None
    variant: str | None = None


class ClusterInformation(Resource):
    KIND: ClassVar[str] = "ClusterInformation"
    PLURAL: ClassVar[str] = "clusterinformations"
    spec: ClusterInformationSpec = Field(default_factory=ClusterInformationSpec)

    def check_name(self) -> str | None:
        return _only_default(self)
