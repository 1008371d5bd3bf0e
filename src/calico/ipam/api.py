"""The IPAM contract used by the CNI plugin, calicoctl and the node agent.

Addresses come from enabled IP pools in per-host affine blocks (pool `blockSize`); every
allocation belongs to a handle (CNI: `<network-name>.<containerID>`) so it can be released
as a unit; every datastore write is compare-and-swap with bounded retry, so allocators on
many hosts never hand out one address twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class IPAMError(Exception):
    """Base class of IPAM failures (the message is fit for an operator)."""


class NoPoolsAvailable(IPAMError):
    """No enabled pool of the requested family applies to this host (or matches the request)."""


class PoolsExhausted(IPAMError):
    """The applicable pools have no free address left for this host."""


class AddressInUse(IPAMError):
    """assign_ip() of an address that is already allocated."""


class AddressNotInPool(IPAMError):
    """assign_ip() of an address outside every configured pool."""


class BlockLimitReached(PoolsExhausted):
    """The host's affine blocks are full and it may not claim another (maxBlocksPerHost)."""


class AffinityMismatch(IPAMError):
    """assign_ip() under strictAffinity of an address in a block affine to another host."""


class RetriesExhausted(IPAMError):
    """Compare-and-swap kept losing to concurrent writers (more than 100 attempts)."""


@dataclass(frozen=True, slots=True)
class AutoAssignRequest:
    handle_id: str
    hostname: str
    num_ipv4: int = 1
    num_ipv6: int = 0
    attrs: Mapping[str, str] = field(default_factory=dict)  # e.g. namespace, pod, node
    ipv4_pools: Sequence[str] = ()  # pool names or CIDRs to restrict to; empty = all usable
    ipv6_pools: Sequence[str] = ()
    intended_use: str = "Workload"  # a pool's allowedUses must include it ("Tunnel": nodes)


@dataclass(frozen=True, slots=True)
class AutoAssignResult:
    """Addresses as interfaces with the block's prefix length (e.g. "10.0.0.5/26")."""

    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()


class IPAM(Protocol):
    def auto_assign(self, request: AutoAssignRequest) -> AutoAssignResult:
        """Allocate from the host's affine blocks, claiming new blocks as needed and borrowing
        from other blocks when strictAffinity is off. All or nothing: on failure nothing
        stays allocated."""
        ...

    def assign_ip(
        self, address: str, handle_id: str, hostname: str, attrs: Mapping[str, str] | None = None
    ) -> None: ...

    def release_ips(self, addresses: Sequence[str]) -> list[str]:
        """Release addresses; returns those that were not allocated."""
        ...

    def release_by_handle(self, handle_id: str) -> None:
        """Release everything allocated to a handle (idempotent: unknown handles are fine)."""
        ...

    def ips_by_handle(self, handle_id: str) -> list[str]: ...
