"""What ADD writes and returns, built without I/O: the WorkloadEndpoint, its profile, the result.

Profiles follow Calico's plugin: the network name for plain CNI calls and for k8s-style calls
without `policy: {type: k8s}`; with it, the namespace profile `kns.<namespace>`. A missing
profile is created: `<network>` as Calico's plugin creates it (egress open; ingress open for
k8s-style calls, otherwise only from endpoints of the same network via the label the profile
applies), and `kns.<namespace>` as Calico's kube-controllers would create it (open both ways,
applying `pcns.projectcalico.org/name`), since calico-py has no Kubernetes controller.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from calico.cni.config import NetConf
from calico.cni.identity import WorkloadIdentity
from calico.cni.netsetup import HOST_MAC, IPV4_GATEWAY, VethInfo
from calico.cni.spec import CniError, Code, Interface, Invocation, IPConfig, Result, Route
from calico.model.base import API_VERSION
from calico.model.codec import parse_as
from calico.model.endpoints import WorkloadEndpoint
from calico.model.errors import ResourceError
from calico.model.policy import Profile

NAMESPACE_PROFILE_PREFIX = "kns."
NAMESPACE_NAME_LABEL = "pcns.projectcalico.org/name"


def profile_for(conf: NetConf, ident: WorkloadIdentity) -> Profile:
    """The profile the endpoint uses, as it would be created if absent (code 7 if the network
    name cannot name a profile)."""
    if conf.policy_type == "k8s" and ident.is_k8s:
        spec: dict[str, Any] = {
            "ingress": [{"action": "Allow"}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {NAMESPACE_NAME_LABEL: ident.namespace},
        }
        name = NAMESPACE_PROFILE_PREFIX + ident.namespace
    else:
        ingress: dict[str, Any] = {"action": "Allow"}
        if not ident.is_k8s:
            ingress["source"] = {"selector": f"has({conf.name})"}
        spec = {"ingress": [ingress], "egress": [{"action": "Allow"}]}
        spec["labelsToApply"] = {conf.name: ""}
        name = conf.name
    doc = {"apiVersion": API_VERSION, "kind": "Profile", "metadata": {"name": name}, "spec": spec}
    try:
        return parse_as(Profile, doc)
    except ResourceError as exc:
        raise CniError(Code.INVALID_CONFIG, f"cannot use profile {name!r}", str(exc)) from None


def host_cidr(cidr: str) -> str:
    """An IPAM interface CIDR narrowed to the single address ("10.0.0.5/26" -> /32)."""
    ip = ipaddress.ip_interface(cidr).ip
    return f"{ip}/{ip.max_prefixlen}"


def build_endpoint(
    conf: NetConf,
    ident: WorkloadIdentity,
    profile: str,
    cidrs: Sequence[str] = (),
    container_mac: str | None = None,
) -> WorkloadEndpoint:
    """The WorkloadEndpoint (validated; code 7 if the identifiers make no valid name)."""
    spec: dict[str, Any] = {
        "orchestrator": ident.orchestrator,
        "node": ident.node,
        "containerID": ident.container_id,
        "endpoint": ident.endpoint,
        "interfaceName": ident.host_veth,
        "ipNetworks": [host_cidr(c) for c in cidrs],
        "profiles": [profile],
    }
    spec.update({"pod": ident.pod} if ident.is_k8s else {"workload": ident.container_id})
    if container_mac:
        spec["mac"] = container_mac
    metadata = {"name": ident.wep_name, "namespace": ident.namespace, "labels": dict(conf.labels)}
    doc = {"apiVersion": API_VERSION, "kind": "WorkloadEndpoint", "metadata": metadata}
    try:
        return parse_as(WorkloadEndpoint, {**doc, "spec": spec})
    except ResourceError as exc:
        raise CniError(
            Code.INVALID_CONFIG, f"cannot build WorkloadEndpoint {ident.wep_name!r}", str(exc)
        ) from None


def build_result(inv: Invocation, info: VethInfo, cidrs: Sequence[str]) -> Result:
    """Host veth first, then the container interface (index 1) that owns every address."""
    interfaces = (
        Interface(info.host_ifname, info.host_mac),
        Interface(inv.ifname, info.container_mac, inv.netns),
    )
    ips = tuple(IPConfig(host_cidr(c), interface=1) for c in cidrs)
    routes: list[Route] = []
    if any(ip.version == 4 for ip in ips):
        routes.append(Route("0.0.0.0/0", IPV4_GATEWAY))
    if any(ip.version == 6 for ip in ips):
        routes.append(Route("::/0", info.ipv6_gateway))
    return Result(interfaces, ips, tuple(routes))


def result_from_endpoint(inv: Invocation, wep: WorkloadEndpoint) -> Result:
    """An ADD repeated for a container that is already wired: describe what is there."""
    spec = wep.spec
    gateway6 = "fe80::ecee:eeff:feee:eeee"  # the EUI-64 link-local of HOST_MAC
    info = VethInfo(spec.interfaceName or "", HOST_MAC, spec.mac or "", gateway6)
    return build_result(inv, info, spec.ipNetworks or [])
