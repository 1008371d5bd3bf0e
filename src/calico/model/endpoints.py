"""Endpoint resources: WorkloadEndpoint (namespaced) and HostEndpoint.

WorkloadEndpoint names are derived from their identifiers as Calico derives them
(`<node>-<orchestrator>-<workload>-<endpoint>`, each part with '-' doubled), ipNetworks
must be single addresses, NATs and allowedIps must fall inside them, and Calico's automatic
labels (`projectcalico.org/namespace`, `…/orchestrator`, `…/serviceaccount`) are added.

`allowedIps` is networking-calico's field, not in Calico's Go types (libcalico-go reads etcd
leniently and so ignores it; upstream calicoctl refuses it): its driver lists each allowed
address pair in ipNetworks, which Felix routes and lets send, and again in allowedIps, which
only its DHCP agent reads (networking_calico/plugins/ml2/drivers/calico/endpoints.py
`endpoint_spec`, and agent/dhcp_agent.py, projectcalico/calico at
87c15906f20c4ca1fda55af92295e7678b0cc0b2).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, model_validator

from calico.model.base import Model, Resource
from calico.model.errors import FieldError
from calico.model.fields import (
    CIDR,
    MAC,
    PORT_PROTOCOLS,
    InterfaceName,
    IPAddress,
    Protocol,
    SingleAddress,
    parse_network,
)
from calico.model.names import workload_endpoint_name as workload_endpoint_name

LABEL_NAMESPACE = "projectcalico.org/namespace"
LABEL_ORCHESTRATOR = "projectcalico.org/orchestrator"
LABEL_SERVICE_ACCOUNT = "projectcalico.org/serviceaccount"


_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _port_name(text: str) -> str:
    """Kubernetes' IsValidPortName, which Calico's `portName` validator applies."""
    if not (len(text) <= 15 and _PORT_NAME.match(text)):
        raise ValueError(
            f"{text!r} is not a valid port name: at most 15 lower case alphanumerics or '-',"
            " starting and ending with an alphanumeric"
        )
    if "--" in text or not any(c.isalpha() for c in text):
        raise ValueError(f"{text!r} is not a valid port name: needs a letter and no '--'")
    return text


PortName = Annotated[str, AfterValidator(_port_name)]


class EndpointPort(Model):
    name: PortName
    protocol: Protocol
    port: int = Field(ge=1, le=65535)

    @model_validator(mode="after")
    def _port_protocol(self) -> EndpointPort:
        if self.protocol not in PORT_PROTOCOLS:
            raise FieldError("protocol", f"{self.protocol!r} does not support ports")
        return self


class WorkloadEndpointPort(Model):
    name: PortName | None = None
    protocol: Protocol
    port: int = Field(ge=1, le=65535)
    hostPort: int | None = Field(default=None, ge=0, le=65535)
    hostIP: IPAddress | None = None

    @model_validator(mode="after")
    def _port_protocol(self) -> WorkloadEndpointPort:
        if self.protocol not in PORT_PROTOCOLS:
            raise FieldError("protocol", f"{self.protocol!r} does not support ports")
        if not self.name and not self.hostPort:
            raise FieldError("name", "a port needs a name unless hostPort is set")
        return self


class IPNAT(Model):
    internalIP: IPAddress
    externalIP: IPAddress

    @model_validator(mode="after")
    def _same_family(self) -> IPNAT:
        internal = ipaddress.ip_address(self.internalIP)
        if internal.version != ipaddress.ip_address(self.externalIP).version:
            raise FieldError("externalIP", "internalIP and externalIP are different IP versions")
        return self


class QoSControls(Model):
    ingressBandwidth: int | None = Field(default=None, ge=0)
    egressBandwidth: int | None = Field(default=None, ge=0)
    ingressBurst: int | None = Field(default=None, ge=0)
    egressBurst: int | None = Field(default=None, ge=0)
    ingressPeakrate: int | None = Field(default=None, ge=0)
    egressPeakrate: int | None = Field(default=None, ge=0)
    ingressMinburst: int | None = Field(default=None, ge=0)
    egressMinburst: int | None = Field(default=None, ge=0)
    ingressPacketRate: int | None = Field(default=None, ge=0)
    egressPacketRate: int | None = Field(default=None, ge=0)
    ingressPacketBurst: int | None = Field(default=None, ge=0)
    egressPacketBurst: int | None = Field(default=None, ge=0)
    ingressMaxConnections: int | None = Field(default=None, ge=0)
    egressMaxConnections: int | None = Field(default=None, ge=0)
    dscp: int | str | None = None


class WorkloadEndpointSpec(Model):
    orchestrator: str | None = None
    workload: str | None = None
    node: str | None = None
    containerID: str | None = None
    pod: str | None = None
    endpoint: str | None = None
    serviceAccountName: str | None = None
    ipNetworks: list[SingleAddress] | None = None
    ipNATs: list[IPNAT] | None = None
    ipv4Gateway: IPAddress | None = None
    ipv6Gateway: IPAddress | None = None
    profiles: list[str] | None = None
    interfaceName: InterfaceName | None = None
    mac: MAC | None = None
    ports: list[WorkloadEndpointPort] | None = None
    allowSpoofedSourcePrefixes: list[CIDR] | None = None
    # networking-calico's Neutron allowed address pairs: entries of ipNetworks that are not
    # the port's own (fixed) addresses, so its DHCP agent does not hand them out.
    allowedIps: list[CIDR] | None = None
    qosControls: QoSControls | None = None
    awsElasticIPs: list[IPAddress] | None = None


class WorkloadEndpoint(Resource):
    KIND: ClassVar[str] = "WorkloadEndpoint"
    PLURAL: ClassVar[str] = "workloadendpoints"
    NAMESPACED: ClassVar[bool] = True
    spec: WorkloadEndpointSpec = Field(default_factory=WorkloadEndpointSpec)

    def computed_name(self) -> str | None:
        """libcalico-go's name: the workload part is the pod for k8s, the container ID for
        cni, "libnetwork" for libnetwork, else spec.workload."""
        s = self.spec
        workload = {"k8s": s.pod, "cni": s.containerID, "libnetwork": "libnetwork"}.get(
            s.orchestrator or "", s.workload
        )
        if s.node and s.orchestrator and workload and s.endpoint:
            return workload_endpoint_name(s.node, s.orchestrator, workload, s.endpoint)
        return None

    def default_name(self) -> str | None:
        return self.computed_name()

    def check_name(self) -> str | None:
        problem = super().check_name()
        if problem:
            return problem
        computed = self.computed_name()
        if computed is not None and computed != self.name:
            return f"{self.name!r} does not match the name derived from the spec: {computed!r}"
        return None

    def check_spec(self) -> None:
        if self.spec.allowedIps or self.spec.ipNATs:  # network objects only to compare
            self._check_inside([parse_network(text) for text in self.spec.ipNetworks or []])
        for field, version in (("ipv4Gateway", 4), ("ipv6Gateway", 6)):
            gw = getattr(self.spec, field)
            if gw is not None and ipaddress.ip_address(gw).version != version:
                raise FieldError(f"spec.{field}", f"{gw!r} is not an IPv{version} address")

    def _check_inside(self, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        for i, text in enumerate(self.spec.allowedIps or []):
            if parse_network(text) not in nets:
                raise FieldError(
                    f"spec.allowedIps.{i}", f"{text!r} is not one of the endpoint's ipNetworks"
                )
        for i, nat in enumerate(self.spec.ipNATs or []):
            if not any(ipaddress.ip_address(nat.internalIP) in n for n in nets):
                raise FieldError(
                    f"spec.ipNATs.{i}.internalIP", "NAT is not in the endpoint's ipNetworks"
                )

    def apply_defaults(self) -> None:
        labels = dict(self.metadata.labels or {})
        labels[LABEL_NAMESPACE] = self.metadata.namespace or "default"
        if self.spec.orchestrator:
            labels[LABEL_ORCHESTRATOR] = self.spec.orchestrator
        if self.spec.serviceAccountName:
            labels[LABEL_SERVICE_ACCOUNT] = self.spec.serviceAccountName
        self.metadata.labels = labels


class HostEndpointSpec(Model):
    node: str | None = None
    interfaceName: InterfaceName | None = None
    expectedIPs: list[IPAddress] | None = None
    profiles: list[str] | None = None
    ports: list[EndpointPort] | None = None

    @model_validator(mode="after")
    def _needs_node_and_target(self) -> HostEndpointSpec:
        if not self.interfaceName and not self.expectedIPs:
            raise FieldError("interfaceName", "no interfaceName or expectedIPs have been specified")
        if not self.node:
            raise FieldError("node", "no node has been specified")
        return self


class HostEndpoint(Resource):
    KIND: ClassVar[str] = "HostEndpoint"
    PLURAL: ClassVar[str] = "hostendpoints"
    spec: HostEndpointSpec
