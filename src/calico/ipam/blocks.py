"""Allocation blocks: the pure arithmetic of Calico IPAM (no I/O, no clock).

A block is a power-of-two CIDR carved from a pool (`blockSize`). It records, per ordinal
(offset into the block), either None (free) or an index into `attributes`, whose entries hold
the allocation's handle and secondary attributes (pod, namespace, node...). Free ordinals are
also kept as a FIFO (`unallocated`): allocation takes from the front and release appends at
the back, so a just-released address is the last to be handed out again.

`sequence_number` is bumped by every datastore write (see `calico.ipam.store`); each allocation
remembers the block's number when it was made, so a release quoting a stale number (the address
was released and re-allocated meanwhile) is refused rather than freeing someone else's address.

JSON uses libcalico-go's etcd field names (`backend/model/block.go`), so blocks written by Calico
decode here and ours decode there. Decoding validates the block's internal consistency: a block
that could lead us to hand out an allocated address raises BlockFormatError instead.

`candidate_blocks` orders a pool's block CIDRs for a host as Calico's `randomBlockGenerator`
does: a start index drawn from a PRNG seeded with the FNV-1 hash of the hostname, then every
block in sequence, wrapping around. Hosts thus start claiming in different places, and one host
keeps the same order across calls.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from calico.ipam.api import AddressInUse

HOST_AFFINITY_PREFIX = "host:"
WINDOWS_RESERVED_HANDLE = "windows-reserved-ipam-handle"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockFormatError(ValueError):
    """Stored block JSON that is malformed or internally inconsistent."""


@dataclass(slots=True)
class AllocationAttribute:
    handle_id: str | None = None
    secondary: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReleaseSpec:
    """An address to release; handle_id/sequence_number, when given, must match the allocation."""

    address: str
    handle_id: str | None = None
    sequence_number: int | None = None


@dataclass(slots=True)
class ReleaseResult:
    released: list[str] = field(default_factory=list)
    unallocated: list[str] = field(default_factory=list)  # were not allocated
    mismatched: list[str] = field(default_factory=list)  # handle or sequence number differed
    handle_counts: dict[str, int] = field(default_factory=dict)  # released per handle


@dataclass(frozen=True, slots=True)
class Allocated:
    ordinal: int
    address: str
    attribute: AllocationAttribute
    sequence_number: int


@dataclass(slots=True)
class AllocationBlock:
    cidr: str
    affinity: str | None
    allocations: list[int | None]
    unallocated: list[int]
    attributes: list[AllocationAttribute] = field(default_factory=list)
    sequence_number: int = 0
    sequence_numbers: dict[int, int] = field(default_factory=dict)  # ordinal -> block seq
    deleted: bool = False
    affinity_claim_time: str | None = None

    @classmethod
    def new(
        cls, cidr: str, host: str | None, sequence_number: int, claim_time: str | None = None
    ) -> AllocationBlock:
        """An empty block; seed sequence_number from the clock so a re-created block never
        repeats an old block's numbers."""
        size = ipaddress.ip_network(cidr).num_addresses
        return cls(
            cidr=str(ipaddress.ip_network(cidr)),
            affinity=f"{HOST_AFFINITY_PREFIX}{host}" if host else None,
            allocations=[None] * size,
            unallocated=list(range(size)),
            sequence_number=sequence_number,
            affinity_claim_time=claim_time if host else None,
        )

    # -- queries ----------------------------------------------------------------------------

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(self.cidr)

    @property
    def size(self) -> int:
        return len(self.allocations)

    @property
    def host(self) -> str | None:
        """The host this block is affine to (None for no or a non-host affinity)."""
        if self.affinity and self.affinity.startswith(HOST_AFFINITY_PREFIX):
            return self.affinity[len(HOST_AFFINITY_PREFIX) :]
        return None

    @property
    def num_free(self) -> int:
        return len(self.unallocated)

    @property
    def in_use(self) -> int:
        return self.size - len(self.unallocated)

    def is_empty(self) -> bool:
        """No allocations other than Windows' reserved addresses."""
        return all(
            idx is None or self.attributes[idx].handle_id == WINDOWS_RESERVED_HANDLE
            for idx in self.allocations
        )

    def ip_at(self, ordinal: int) -> str:
        return str(self.network.network_address + ordinal)

    def ordinal_of(self, address: str) -> int | None:
        """The address's offset in this block, or None if it lies outside."""
        net = self.network
        ip = ipaddress.ip_address(address)
        if ip.version != net.version or ip not in net:
            return None
        return int(ip) - int(net.network_address)

    def allocated(self) -> Iterator[Allocated]:
        for ordinal, idx in enumerate(self.allocations):
            if idx is not None:
                seq = self.sequence_numbers.get(ordinal, 0)
                yield Allocated(ordinal, self.ip_at(ordinal), self.attributes[idx], seq)

    def attribute_of(self, address: str) -> AllocationAttribute | None:
        ordinal = self._ordinal(address)
        idx = self.allocations[ordinal]
        return None if idx is None else self.attributes[idx]

    def ips_by_handle(self, handle_id: str) -> list[str]:
        return [a.address for a in self.allocated() if a.attribute.handle_id == handle_id]

    def handle_counts(self) -> dict[str, int]:
        """Addresses allocated per handle (what each handle record should say for this block)."""
        counts: dict[str, int] = {}
        for alloc in self.allocated():
            if alloc.attribute.handle_id is not None:
                handle = alloc.attribute.handle_id
                counts[handle] = counts.get(handle, 0) + 1
        return counts

    # -- mutations --------------------------------------------------------------------------

    def auto_assign(self, num: int, handle_id: str | None, attrs: Mapping[str, str]) -> list[str]:
        """Allocate up to num addresses from the front of the free FIFO."""
        taken, self.unallocated = self.unallocated[:num], self.unallocated[num:]
        if not taken:
            return []
        idx = self._attribute_index(handle_id, attrs)
        for ordinal in taken:
            self.allocations[ordinal] = idx
            self.sequence_numbers[ordinal] = self.sequence_number
        return [self.ip_at(o) for o in taken]

    def assign(self, address: str, handle_id: str | None, attrs: Mapping[str, str]) -> None:
        """Allocate one given address (AddressInUse if it is taken)."""
        ordinal = self._ordinal(address)
        if self.allocations[ordinal] is not None:
            raise AddressInUse(f"{address} is already allocated")
        self.allocations[ordinal] = self._attribute_index(handle_id, attrs)
        self.sequence_numbers[ordinal] = self.sequence_number
        self.unallocated.remove(ordinal)

    def release(self, specs: Sequence[ReleaseSpec]) -> ReleaseResult:
        """Free the addresses that are allocated and match their spec's handle/sequence."""
        result = ReleaseResult()
        ordinals: list[int] = []
        for spec in {s.address: s for s in specs}.values():
            ordinal = self._ordinal(spec.address)
            idx = self.allocations[ordinal]
            if idx is None:
                result.unallocated.append(spec.address)
            elif self._mismatch(spec, ordinal, self.attributes[idx].handle_id):
                result.mismatched.append(spec.address)
            else:
                ordinals.append(ordinal)
                result.released.append(spec.address)
                handle = self.attributes[idx].handle_id
                if handle is not None:
                    result.handle_counts[handle] = result.handle_counts.get(handle, 0) + 1
        self._free(ordinals)
        return result

    def release_by_handle(self, handle_id: str) -> int:
        """Free every address of a handle; returns how many."""
        ordinals = [a.ordinal for a in self.allocated() if a.attribute.handle_id == handle_id]
        self._free(ordinals)
        return len(ordinals)

    # -- internals --------------------------------------------------------------------------

    def _ordinal(self, address: str) -> int:
        ordinal = self.ordinal_of(address)
        if ordinal is None:
            raise ValueError(f"{address} is not in block {self.cidr}")
        return ordinal

    def _mismatch(self, spec: ReleaseSpec, ordinal: int, handle_id: str | None) -> bool:
        if spec.handle_id is not None and spec.handle_id != handle_id:
            return True
        seq = self.sequence_numbers.get(ordinal, 0)
        return spec.sequence_number is not None and spec.sequence_number != seq

    def _attribute_index(self, handle_id: str | None, attrs: Mapping[str, str]) -> int:
        """Reuse an identical attribute entry, else append one (as Calico does)."""
        wanted = AllocationAttribute(handle_id, dict(attrs))
        for i, existing in enumerate(self.attributes):
            if existing == wanted:
                return i
        self.attributes.append(wanted)
        return len(self.attributes) - 1

    def _free(self, ordinals: Sequence[int]) -> None:
        """Unallocate ordinals (appended to the FIFO) and drop attributes no longer used."""
        if not ordinals:
            return
        for ordinal in ordinals:
            self.allocations[ordinal] = None
            self.unallocated.append(ordinal)
            self.sequence_numbers.pop(ordinal, None)
        used = sorted({idx for idx in self.allocations if idx is not None})
        if used == list(range(len(self.attributes))):
            return
        remap = {old: new for new, old in enumerate(used)}
        self.attributes = [self.attributes[i] for i in used]
        self.allocations = [None if i is None else remap[i] for i in self.allocations]

    # -- JSON -------------------------------------------------------------------------------

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "cidr": self.cidr,
            "affinity": self.affinity,
            "allocations": self.allocations,
            "unallocated": self.unallocated,
            "attributes": [
                {"handle_id": a.handle_id, "secondary": a.secondary or None}
                for a in self.attributes
            ],
            "sequenceNumber": self.sequence_number,
            "sequenceNumberForAllocation": {
                str(k): v for k, v in sorted(self.sequence_numbers.items())
            },
            "deleted": self.deleted,
        }
        if self.affinity_claim_time is not None:
            data["affinityClaimTime"] = self.affinity_claim_time
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> AllocationBlock:
        try:
            data = json.loads(raw)
            block = _decode_block(data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BlockFormatError(f"invalid allocation block: {exc}") from None
        problem = _inconsistency(block)
        if problem:
            raise BlockFormatError(f"inconsistent allocation block {block.cidr}: {problem}")
        return block


def _decode_block(data: dict[str, Any]) -> AllocationBlock:
    affinity = data.get("affinity")
    if affinity is None and data.get("hostAffinity"):  # pre-v3 spelling
        affinity = f"{HOST_AFFINITY_PREFIX}{data['hostAffinity']}"
    attributes = [
        AllocationAttribute(
            a.get("handle_id"), {str(k): str(v) for k, v in (a.get("secondary") or {}).items()}
        )
        for a in data.get("attributes") or []
    ]
    claim_time = data.get("affinityClaimTime")
    return AllocationBlock(
        cidr=str(ipaddress.ip_network(data["cidr"])),
        affinity=None if affinity is None else str(affinity),
        allocations=[None if a is None else int(a) for a in data["allocations"]],
        unallocated=[int(o) for o in data.get("unallocated") or []],
        attributes=attributes,
        sequence_number=int(data.get("sequenceNumber") or 0),
        sequence_numbers={
            int(k): int(v) for k, v in (data.get("sequenceNumberForAllocation") or {}).items()
        },
        deleted=bool(data.get("deleted", False)),
        affinity_claim_time=None if claim_time is None else str(claim_time),
    )


def _inconsistency(block: AllocationBlock) -> str | None:
    if block.size != block.network.num_addresses:
        return f"{block.size} allocation slots for {block.network.num_addresses} addresses"
    if any(i is not None and not 0 <= i < len(block.attributes) for i in block.allocations):
        return "allocation refers to a missing attribute"
    free = {o for o, i in enumerate(block.allocations) if i is None}
    if len(block.unallocated) != len(set(block.unallocated)) or set(block.unallocated) != free:
        return "unallocated list does not match the free allocations"
    return None


def fnv1_32(data: bytes) -> int:
    """FNV-1 (not 1a) 32-bit hash, as Go's hash/fnv New32 used by Calico to seed block order."""
    value = 0x811C9DC5
    for byte in data:
        value = ((value * 0x01000193) & 0xFFFFFFFF) ^ byte
    return value


def block_cidr_for(address: str, block_size: int) -> str:
    """The CIDR of the block of size /block_size that holds address."""
    return str(ipaddress.ip_network(f"{address}/{block_size}", strict=False))


def _geometry(pool_cidr: str, block_size: int, hostname: str) -> tuple[IPNetwork, int, int, int]:
    """(pool, number of blocks, addresses per block, the host's start index)."""
    pool = ipaddress.ip_network(pool_cidr)
    if block_size < pool.prefixlen or block_size > pool.max_prefixlen:
        return pool, 0, 1, 0
    count = 1 << (block_size - pool.prefixlen)
    start = random.Random(fnv1_32(hostname.encode())).randrange(count)
    return pool, count, 1 << (pool.max_prefixlen - block_size), start


def candidate_blocks(pool_cidr: str, block_size: int, hostname: str) -> Iterator[str]:
    """Every block CIDR of a pool, in the host's pseudo-random order (see module docstring)."""
    pool, count, step, start = _geometry(pool_cidr, block_size, hostname)
    for i in range(count):
        yield f"{pool.network_address + ((start + i) % count) * step}/{block_size}"


def candidate_rank(pool_cidr: str, block_size: int, hostname: str) -> Callable[[str], int]:
    """Position of a block CIDR in candidate_blocks' order, without walking a huge pool."""
    pool, count, step, start = _geometry(pool_cidr, block_size, hostname)
    base = int(pool.network_address)

    def rank(cidr: str) -> int:
        index = (int(ipaddress.ip_network(cidr).network_address) - base) // step
        return (index - start) % count if count else 0

    return rank
