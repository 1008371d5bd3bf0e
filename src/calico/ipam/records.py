"""Handle and block-affinity records and their JSON (pure).

Handle (`/calico/ipam/v2/handle/<id>`): how many addresses a handle holds in each block,
`{"handleID": id, "block": {"<cidr>": n}, "deleted": false}`. Calico's etcd model keeps the ID
only in the key; we also write `handleID` (the brief's shape; Go's decoder ignores it), and read
records without it. Counts let release-by-handle visit just the blocks that matter.

Block affinity (`/calico/ipam/v2/host/<host>/ipv4/block/<cidr>`): `{"state": ..., "deleted":
false}`. A claim writes `pending`, then creates the block, then writes `confirmed`; a pending
affinity whose block is missing or owned by another host is not an affinity. `pendingDeletion`
marks a release in progress. An empty state is treated as confirmed (pre-state data).
"""

from __future__ import annotations

import enum
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any


class RecordFormatError(ValueError):
    """Stored handle or affinity JSON that is malformed."""


class AffinityState(enum.Enum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    PENDING_DELETION = "pendingDeletion"


@dataclass(slots=True)
class Handle:
    handle_id: str
    block: dict[str, int] = field(default_factory=dict)  # block CIDR -> addresses held
    deleted: bool = False

    def increment(self, cidr: str, num: int) -> None:
        self.block[cidr] = self.block.get(cidr, 0) + num

    def decrement(self, cidr: str, num: int) -> bool:
        """Lower a count (dropping it at zero); False if the handle held fewer than num."""
        current = self.block.get(cidr, 0)
        if current - num > 0:
            self.block[cidr] = current - num
        else:
            self.block.pop(cidr, None)
        return current >= num

    def set_count(self, cidr: str, num: int) -> None:
        if num > 0:
            self.block[cidr] = num
        else:
            self.block.pop(cidr, None)

    @property
    def empty(self) -> bool:
        return not self.block

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "handleID": self.handle_id,
            "block": dict(sorted(self.block.items())),
        }
        data["deleted"] = self.deleted
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, handle_id: str, raw: bytes) -> Handle:
        try:
            data: dict[str, Any] = json.loads(raw)
            counts = {
                str(ipaddress.ip_network(k)): int(v) for k, v in (data.get("block") or {}).items()
            }
            return cls(handle_id, counts, bool(data.get("deleted", False)))
        except (ValueError, TypeError, AttributeError) as exc:
            raise RecordFormatError(f"invalid IPAM handle {handle_id!r}: {exc}") from None


@dataclass(slots=True)
class BlockAffinity:
    state: AffinityState = AffinityState.PENDING
    deleted: bool = False

    def to_json(self) -> bytes:
        data = {"state": self.state.value, "deleted": self.deleted}
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> BlockAffinity:
        try:
            data: dict[str, Any] = json.loads(raw)
            state = AffinityState(data.get("state") or AffinityState.CONFIRMED.value)
            return cls(state, bool(data.get("deleted", False)))
        except (ValueError, TypeError, AttributeError) as exc:
            raise RecordFormatError(f"invalid block affinity: {exc}") from None
