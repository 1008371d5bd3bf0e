"""A workload's addresses from Calico IPAM: allocated on ADD, released on DEL (both plugins).

Allocations carry Calico's attributes (node, timestamp; pod and namespace for k8s-style calls)
under the handle `<network>.<containerID>`. `IP=<addr>` in CNI_ARGS (the CNI convention)
asks for that exact address instead of auto-assignment. Release is by handle and then by the
legacy workload handle, as Calico's calico-ipam does, so addresses of older releases go too.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

from calico.cni.config import NetConf
from calico.cni.identity import WorkloadIdentity
from calico.cni.services import datastore_errors
from calico.cni.spec import CniError, Code, Invocation
from calico.ipam.api import IPAM, AutoAssignRequest


def allocate(ipam: IPAM, conf: NetConf, ident: WorkloadIdentity, inv: Invocation) -> list[str]:
    """Interface CIDRs as IPAM returned them (e.g. "198.19.0.5/26"), IPv4 first."""
    handle = ident.handle_id(conf.name)
    attrs = _attrs(ident)
    requested = inv.args.get("IP")
    if requested:
        address = _requested_address(requested)
        with datastore_errors(f"assigning {address}"):
            ipam.assign_ip(str(address), handle, ident.node, attrs)
        return [f"{address}/{address.max_prefixlen}"]
    request = AutoAssignRequest(
        handle_id=handle,
        hostname=ident.node,
        num_ipv4=1 if conf.ipam.assign_ipv4 else 0,
        num_ipv6=1 if conf.ipam.assign_ipv6 else 0,
        attrs=attrs,
        ipv4_pools=conf.ipam.ipv4_pools,
        ipv6_pools=conf.ipam.ipv6_pools,
    )
    with datastore_errors("assigning addresses"):
        result = ipam.auto_assign(request)
    if len(result.ipv4) < request.num_ipv4 or len(result.ipv6) < request.num_ipv6:
        release(ipam, conf, ident)
        raise CniError(
            Code.IPAM_FAILURE,
            f"IPAM assigned {len(result.ipv4)} IPv4 and {len(result.ipv6)} IPv6 addresses, "
            f"{request.num_ipv4} and {request.num_ipv6} were requested",
        )
    return [*result.ipv4[: request.num_ipv4], *result.ipv6[: request.num_ipv6]]


def release(ipam: IPAM, conf: NetConf, ident: WorkloadIdentity) -> None:
    with datastore_errors("releasing addresses"):
        ipam.release_by_handle(ident.handle_id(conf.name))
        ipam.release_by_handle(ident.legacy_handle_id)


def _attrs(ident: WorkloadIdentity) -> dict[str, str]:
    attrs = {"node": ident.node, "timestamp": datetime.now(UTC).isoformat()}
    if ident.is_k8s and ident.pod:
        attrs.update(pod=ident.pod, namespace=ident.namespace)
    return attrs


def _requested_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise CniError(
            Code.INVALID_ENVIRONMENT, f"CNI_ARGS IP={text!r} is not an address"
        ) from None
