"""`calicoctl ipam check`: cross-reference IPAM allocations with what actually uses addresses.

An allocation is in use when a WorkloadEndpoint lists its address, when a Node carries it as a
tunnel address, when its handle is a CNI handle `<network>.<containerID>` and a
WorkloadEndpoint with that containerID exists, or when its handle is a node's tunnel handle
(`ipip-tunnel-addr-<node>`...) and that Node exists. Anything else is reported as leaked, as are
handle records that no allocation uses. The JSON report has libcalico-go's `ipam check -o`
shape (`calicoctl/commands/ipam/check.go`): metadata, every allocation keyed by address with
`inUse`/`owners`, and `leakedHandles`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from calico.datastore.client import ResourceClient, ResourceNotFound
from calico.ipam.blocks import AllocationBlock
from calico.ipam.store import IPAMStore
from calico.model.endpoints import WorkloadEndpoint
from calico.model.network import ClusterInformation, IPPool, Node
from calico.model.vxlan import tunnel_handle

TUNNEL_HANDLE_PREFIXES = (
    "ipip-tunnel-addr-",
    tunnel_handle("", 4),  # calico/node's VXLAN handles (`calico.node.tunnels`)
    tunnel_handle("", 6),
    "wireguard-tunnel-addr-",
    "wireguard-v6-tunnel-addr-",
)


@dataclass(slots=True)
class Allocation:
    ip: str
    handle: str | None
    sequence_number: int
    attrs: dict[str, str]
    node: str
    borrowed: bool
    owners: list[str] = field(default_factory=list)

    @property
    def in_use(self) -> bool:
        return bool(self.owners)

    def attr_string(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.attrs.items()))
        return f"Main:{self.handle or '<none>'} Extra:{extra}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ip": self.ip}
        optional = {
            "handle": self.handle,
            "sequenceNumber": self.sequence_number,
            "pod": self.attrs.get("pod"),
            "namespace": self.attrs.get("namespace"),
            "node": self.node,
            "type": self.attrs.get("type"),
            "creationTimestamp": self.attrs.get("timestamp"),
        }
        data.update({k: v for k, v in optional.items() if v not in (None, "")})
        data["inUse"] = self.in_use
        if self.borrowed:
            data["borrowed"] = True
        data["owners"] = self.owners or None
        return data


def allocations_of(block: AllocationBlock) -> list[Allocation]:
    owner = block.host or ""
    result = []
    for alloc in block.allocated():
        node = alloc.attribute.secondary.get("node") or owner
        result.append(
            Allocation(
                alloc.address,
                alloc.attribute.handle_id,
                alloc.sequence_number,
                dict(alloc.attribute.secondary),
                node,
                borrowed=node != owner,
            )
        )
    return result


class IPAMChecker:
    """One run of the check; `out` receives the human-readable progress lines."""

    def __init__(
        self,
        store: IPAMStore,
        resources: ResourceClient,
        out: Callable[[str], None],
        show_problems: bool = False,
    ) -> None:
        self.store = store
        self.resources = resources
        self.out = out
        self.show_problems = show_problems
        self.allocations: dict[str, list[Allocation]] = {}
        self.in_use: dict[str, list[str]] = {}  # address -> owners
        self.containers: dict[str, str] = {}  # containerID -> owner
        self.nodes: set[str] = set()
        self.leaked_handles: list[dict[str, Any]] = []
        self.problems = 0

    def run(self, version: str) -> dict[str, Any]:
        """Print the check and return the JSON report."""
        self.out("Checking IPAM for inconsistencies...\n")
        self._load_blocks()
        pools = self._load_pools()
        self._load_nodes()
        self._load_workloads()
        handles = {s.value.handle_id: s.revision for s in self.store.list_handles()}
        self._mark_owned_by_handle()
        self._scan_leaked_ips()
        self._scan_unallocated_ips(pools)
        self._scan_handles(handles)
        self.out(f"Check complete; found {self.problems} problems.")
        return self._report(version)

    def _load_blocks(self) -> None:
        self.out("Loading all IPAM blocks...")
        blocks = sorted((s.value for s in self.store.list_blocks()), key=lambda b: _key(b.cidr))
        self.out(f"Found {len(blocks)} IPAM blocks.")
        count = 0
        for block in blocks:
            self.out(f" IPAM block {block.cidr} affinity={block.affinity or '<none>'}:")
            for alloc in allocations_of(block):
                self.allocations.setdefault(alloc.ip, []).append(alloc)
                count += 1
        self.out(f"IPAM blocks record {count} allocations.\n")

    def _load_pools(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        self.out("Loading all IPAM pools...")
        active = []
        for pool in self.resources.list(IPPool).items:
            if isinstance(pool, IPPool) and not pool.spec.disabled:
                self.out(f"  {pool.spec.cidr}")
                active.append(ipaddress.ip_network(pool.spec.cidr))
        self.out(f"Found {len(active)} active IP pools.\n")
        return active

    def _load_nodes(self) -> None:
        self.out("Loading all nodes.")
        count = 0
        for node in self.resources.list(Node).items:
            if isinstance(node, Node):
                self.nodes.add(node.name)
                for ip in _node_ips(node):
                    self._record_in_use(ip, f"Node({node.name})")
                    count += 1
        self.out(f"Found {count} node tunnel IPs.\n")

    def _load_workloads(self) -> None:
        self.out("Loading all workload endpoints.")
        count = 0
        for wep in self.resources.list(WorkloadEndpoint).items:
            if not isinstance(wep, WorkloadEndpoint):
                continue
            owner = f"Workload({wep.namespace}/{wep.name})"
            if wep.spec.containerID:
                self.containers[wep.spec.containerID] = owner
            for net in wep.spec.ipNetworks or []:
                self._record_in_use(
                    str(ipaddress.ip_network(net, strict=False).network_address), owner
                )
                count += 1
        self.out(f"Found {count} workload IPs.")
        self.out(f"Workloads and nodes are using {len(self.in_use)} IPs.\n")

    def _record_in_use(self, ip: str, owner: str) -> None:
        self.in_use.setdefault(ip, []).append(owner)
        for alloc in self.allocations.get(ip, []):
            alloc.owners.append(owner)

    def _mark_owned_by_handle(self) -> None:
        """Count an allocation as used when its handle names a live container or node."""
        for allocs in self.allocations.values():
            for alloc in allocs:
                owner = self._handle_owner(alloc.handle)
                if owner is not None and owner not in alloc.owners:
                    alloc.owners.append(owner)

    def _handle_owner(self, handle: str | None) -> str | None:
        if not handle:
            return None
        for prefix in TUNNEL_HANDLE_PREFIXES:
            if handle.startswith(prefix):
                node = handle[len(prefix) :]
                return f"Node({node})" if node in self.nodes else None
        _, dot, container = handle.rpartition(".")
        return self.containers.get(container) if dot else None

    def _scan_leaked_ips(self) -> None:
        self.out("Scanning for IPs that are allocated but not actually in use...")
        leaked = 0
        for ip in sorted(self.allocations, key=_key):
            for alloc in self.allocations[ip]:
                if not alloc.in_use:
                    leaked += 1
                    if self.show_problems:
                        self.out(f"  {ip} leaked; attrs {alloc.attr_string()}")
        self.problems += leaked
        self.out(f"Found {leaked} IPs that are allocated in IPAM but not actually in use.")

    def _scan_unallocated_ips(
        self, pools: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    ) -> None:
        self.out(
            "Scanning for IPs that are in use by a workload or node but not allocated in IPAM..."
        )
        outside = unallocated = 0
        for ip in sorted(self.in_use, key=_key):
            if ip in self.allocations:
                continue
            addr = ipaddress.ip_address(ip)
            in_pool = any(addr.version == p.version and addr in p for p in pools)
            outside += not in_pool
            unallocated += in_pool
            if self.show_problems:
                where = "and in active IPAM pool but has no IPAM allocation" if in_pool else (
                    "is not in any active IP pool"
                )  # fmt: skip
                self.out(f"  {ip} in use by {','.join(self.in_use[ip])} {where}.")
        self.problems += outside + unallocated
        self.out(f"Found {outside} in-use IPs that are not in active IP pools.")
        self.out(
            f"Found {unallocated} in-use IPs that are in active IP pools but have no"
            " corresponding IPAM allocation.\n"
        )

    def _scan_handles(self, handles: dict[str, int]) -> None:
        self.out("Scanning for IPAM handles with no matching IPs...")
        used = {a.handle for allocs in self.allocations.values() for a in allocs if a.handle}
        for handle_id in sorted(set(handles) - used):
            if self.show_problems:
                self.out(f"  {handle_id} doesn't have any active IPs.")
            self.leaked_handles.append(
                {"ID": handle_id, "UID": None, "Revision": str(handles[handle_id])}
            )
        self.problems += len(self.leaked_handles)
        self.out(
            f"Found {len(self.leaked_handles)} handles with no matching IPs (and"
            f" {len(set(handles) & used)} handles with matches)."
        )
        self.out("Scanning for IPs with missing handle...")
        missing = sorted(used - set(handles))
        for handle_id in missing if self.show_problems else []:
            self.out(f"  {handle_id} is in use in a block but doesn't exist.")
        self.out(
            f"Found {len(missing)} handles mentioned in blocks with no matching handle resource."
        )

    def _report(self, version: str) -> dict[str, Any]:
        try:
            info = self.resources.get(ClusterInformation, "default")
            guid, kind = info.spec.clusterGUID or "", info.spec.clusterType or ""
            revision, locked = (
                info.metadata.resourceVersion or "",
                info.spec.datastoreReady is False,
            )
        except ResourceNotFound:
            guid = kind = revision = ""
            locked = False
        report: dict[str, Any] = {
            "version": version,
            "clusterGUID": guid,
            "datastoreLocked": locked,
            "clusterInformationRevision": revision,
            "clusterType": kind,
            "allocations": {
                ip: [a.to_json() for a in allocs]
                for ip, allocs in sorted(self.allocations.items(), key=lambda i: _key(i[0]))
            },
        }
        if self.leaked_handles:
            report["leakedHandles"] = self.leaked_handles
        return report


def _node_ips(node: Node) -> list[str]:
    spec = node.spec
    wg = spec.wireguard
    candidates = [
        spec.ipv4VXLANTunnelAddr,
        spec.ipv6VXLANTunnelAddr,
        wg.interfaceIPv4Address if wg else None,
        wg.interfaceIPv6Address if wg else None,
        spec.bgp.ipv4IPIPTunnelAddr if spec.bgp else None,
    ]
    return [str(ipaddress.ip_address(c.split("/")[0])) for c in candidates if c]


def _key(ip: str) -> tuple[int, int]:
    net = ipaddress.ip_network(ip, strict=False)
    return net.version, int(net.network_address)
