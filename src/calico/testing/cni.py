"""An in-memory Calico IPAM for the CNI plugins' pure unit tests: the plugins' IPAM seam
(`auto_assign`, `assign_ip`, `release_*`, `ips_by_handle`) over two small pools, with
Calico's errors when they run out or an address is taken. Real IPAM runs against etcd in the
integration and CNI tiers."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from calico.ipam.api import AddressInUse, AutoAssignRequest, AutoAssignResult, PoolsExhausted


@dataclass
class FakeIPAM:
    """Calico IPAM's contract over two small pools (a /29 and a /125, blocks of the same size)."""

    v4: list[str] = field(default_factory=lambda: _hosts("198.19.0.0/29"))
    v6: list[str] = field(default_factory=lambda: _hosts("2001:db8:100::/125"))
    allocations: dict[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict)
    requests: list[AutoAssignRequest] = field(default_factory=list)

    def auto_assign(self, request: AutoAssignRequest) -> AutoAssignResult:
        self.requests.append(request)
        free4 = [a for a in self.v4 if a not in self.allocations]
        free6 = [a for a in self.v6 if a not in self.allocations]
        if len(free4) < request.num_ipv4 or len(free6) < request.num_ipv6:
            raise PoolsExhausted("no free addresses in the pools for this host")
        picked = free4[: request.num_ipv4] + free6[: request.num_ipv6]
        for address in picked:
            self.allocations[address] = (request.handle_id, dict(request.attrs))
        return AutoAssignResult(
            tuple(f"{a}/29" for a in picked if ":" not in a),
            tuple(f"{a}/125" for a in picked if ":" in a),
        )

    def assign_ip(
        self, address: str, handle_id: str, hostname: str, attrs: Mapping[str, str] | None = None
    ) -> None:
        if address in self.allocations:
            raise AddressInUse(f"{address} is already allocated")
        self.allocations[address] = (handle_id, dict(attrs or {}))

    def release_ips(self, addresses: Sequence[str]) -> list[str]:
        missing = [a for a in addresses if a not in self.allocations]
        for address in addresses:
            self.allocations.pop(address, None)
        return missing

    def release_by_handle(self, handle_id: str) -> None:
        for address in self.ips_by_handle(handle_id):
            del self.allocations[address]

    def ips_by_handle(self, handle_id: str) -> list[str]:
        return [a for a, (h, _) in self.allocations.items() if h == handle_id]


def _hosts(cidr: str) -> list[str]:
    return [str(a) for a in ipaddress.ip_network(cidr)]
