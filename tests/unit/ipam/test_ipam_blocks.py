"""Allocation block arithmetic, JSON and block ordering (pure), with property tests."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from calico.ipam import keys
from calico.ipam.api import AddressInUse
from calico.ipam.blocks import (
    AllocationAttribute,
    AllocationBlock,
    BlockFormatError,
    ReleaseSpec,
    block_cidr_for,
    candidate_blocks,
    candidate_rank,
    fnv1_32,
)
from calico.ipam.records import AffinityState, BlockAffinity, Handle, RecordFormatError


def block(cidr: str = "10.0.0.0/29", host: str | None = "h1", seq: int = 100) -> AllocationBlock:
    return AllocationBlock.new(cidr, host, seq)


def test_new_block_is_all_free_and_affine() -> None:
    b = block()
    assert (b.size, b.num_free, b.in_use, b.host) == (8, 8, 0, "h1")
    assert b.affinity == "host:h1" and b.is_empty()
    assert AllocationBlock.new("10.0.0.0/29", None, 1).host is None


def test_auto_assign_takes_lowest_ordinals_and_records_sequence() -> None:
    b = block()
    assert b.auto_assign(3, "handle-a", {"pod": "p"}) == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]
    assert b.allocations[:4] == [0, 0, 0, None]
    assert b.attributes == [AllocationAttribute("handle-a", {"pod": "p"})]
    assert b.sequence_numbers == {0: 100, 1: 100, 2: 100}
    assert b.auto_assign(2, "handle-b", {}) == ["10.0.0.3", "10.0.0.4"]
    assert b.handle_counts() == {"handle-a": 3, "handle-b": 2}


def test_released_address_is_reused_last() -> None:
    b = block()
    b.auto_assign(3, "h", {})
    b.release([ReleaseSpec("10.0.0.0")])
    assert b.auto_assign(5, "h", {}) == [f"10.0.0.{i}" for i in (3, 4, 5, 6, 7)]
    assert b.auto_assign(1, "h", {}) == ["10.0.0.0"]
    assert b.auto_assign(1, "h", {}) == []


def test_assign_specific_address() -> None:
    b = block()
    b.assign("10.0.0.5", "h", {})
    assert 5 not in b.unallocated and b.attribute_of("10.0.0.5") == AllocationAttribute("h", {})
    with pytest.raises(AddressInUse):
        b.assign("10.0.0.5", "other", {})
    with pytest.raises(ValueError, match="not in block"):
        b.assign("10.0.1.5", "h", {})


def test_release_reports_unallocated_mismatched_and_counts() -> None:
    b = block()
    b.auto_assign(2, "a", {})
    b.auto_assign(1, "b", {})
    result = b.release(
        [
            ReleaseSpec("10.0.0.0"),
            ReleaseSpec("10.0.0.1", handle_id="wrong"),
            ReleaseSpec("10.0.0.2", sequence_number=99),
            ReleaseSpec("10.0.0.7"),
            ReleaseSpec("10.0.0.0"),  # duplicates count once
        ]
    )
    assert result.released == ["10.0.0.0"]
    assert result.mismatched == ["10.0.0.1", "10.0.0.2"]
    assert result.unallocated == ["10.0.0.7"]
    assert result.handle_counts == {"a": 1}


def test_release_drops_unused_attributes_and_reindexes() -> None:
    b = block()
    b.auto_assign(1, "a", {})
    b.auto_assign(1, "b", {})
    b.release([ReleaseSpec("10.0.0.0")])
    assert b.attributes == [AllocationAttribute("b", {})]
    assert b.allocations[1] == 0


def test_release_by_handle_and_ips_by_handle() -> None:
    b = block()
    b.auto_assign(2, "a", {})
    b.auto_assign(2, "b", {"x": "1"})
    assert b.ips_by_handle("b") == ["10.0.0.2", "10.0.0.3"]
    assert b.release_by_handle("b") == 2
    assert b.release_by_handle("b") == 0
    assert b.handle_counts() == {"a": 2} and b.unallocated[-2:] == [2, 3]


def test_windows_reserved_addresses_do_not_make_a_block_non_empty() -> None:
    b = block()
    b.auto_assign(1, "windows-reserved-ipam-handle", {})
    assert b.is_empty()
    b.auto_assign(1, "x", {})
    assert not b.is_empty()


CALICO_BLOCK = {
    "cidr": "192.168.10.0/30",
    "affinity": "host:node-1",
    "allocations": [0, None, 1, None],
    "unallocated": [3, 1],
    "attributes": [
        {"handle_id": "k8s-pod-network.abc", "secondary": {"namespace": "ns", "pod": "p"}},
        {"handle_id": "ipip-tunnel-addr-node-1", "secondary": None},
    ],
    "sequenceNumber": 1700000000000000001,
    "sequenceNumberForAllocation": {"0": 1700000000000000000, "2": 1700000000000000000},
    "deleted": False,
}


def test_decodes_calico_json_and_encodes_the_same_fields() -> None:
    b = AllocationBlock.from_json(json.dumps(CALICO_BLOCK).encode())
    assert b.host == "node-1" and b.unallocated == [3, 1]
    assert b.attribute_of("192.168.10.0") == AllocationAttribute(
        "k8s-pod-network.abc", {"namespace": "ns", "pod": "p"}
    )
    assert b.auto_assign(1, "x", {}) == ["192.168.10.3"]
    assert json.loads(AllocationBlock.from_json(json.dumps(CALICO_BLOCK).encode()).to_json()) == (
        CALICO_BLOCK
    )


def test_legacy_host_affinity_and_claim_time() -> None:
    data = {**CALICO_BLOCK, "affinity": None, "hostAffinity": "old", "affinityClaimTime": "t"}
    b = AllocationBlock.from_json(json.dumps(data).encode())
    assert b.affinity == "host:old" and b.affinity_claim_time == "t"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"allocations": [0, None]}, "allocation slots"),
        ({"allocations": [5, None, 1, None]}, "missing attribute"),
        ({"unallocated": [3]}, "unallocated list"),
        ({"unallocated": [3, 1, 1]}, "unallocated list"),
        ({"unallocated": [3, 2]}, "unallocated list"),
        ({"cidr": "not-a-cidr"}, "invalid allocation block"),
        ({"allocations": None}, "invalid allocation block"),
    ],
)
def test_inconsistent_blocks_are_rejected(change: dict[str, object], message: str) -> None:
    with pytest.raises(BlockFormatError, match=message):
        AllocationBlock.from_json(json.dumps({**CALICO_BLOCK, **change}).encode())
    with pytest.raises(BlockFormatError):
        AllocationBlock.from_json(b"{nope")


def test_fnv1_matches_go_hash_fnv_new32() -> None:
    assert fnv1_32(b"") == 0x811C9DC5
    assert fnv1_32(b"a") == 0x050C5D7E
    assert fnv1_32(b"foobar") == 0x31F0B262


def test_candidate_blocks_cover_the_pool_once_in_a_host_seeded_rotation() -> None:
    order = list(candidate_blocks("10.0.0.0/24", 29, "host-1"))
    by_address = [f"10.0.0.{i * 8}/29" for i in range(32)]
    start = order.index("10.0.0.0/29")
    assert order[start:] + order[:start] == by_address  # a rotation of address order
    assert order == list(candidate_blocks("10.0.0.0/24", 29, "host-1"))
    starts = {next(candidate_blocks("10.0.0.0/24", 29, f"host-{i}")) for i in range(10)}
    assert len(starts) > 3
    rank = candidate_rank("10.0.0.0/24", 29, "host-1")
    assert [rank(c) for c in order] == list(range(32))
    assert list(candidate_blocks("10.0.0.0/24", 20, "h")) == []


def test_candidate_blocks_ipv6_and_huge_pools_are_lazy() -> None:
    assert sorted(candidate_blocks("fd00::/120", 122, "h")) == [
        "fd00::/122",
        "fd00::40/122",
        "fd00::80/122",
        "fd00::c0/122",
    ]
    first = next(candidate_blocks("fd00::/48", 122, "h"))
    assert ipaddress.ip_network(first).subnet_of(ipaddress.ip_network("fd00::/48"))
    assert candidate_rank("fd00::/48", 122, "h")(first) == 0


def test_block_cidr_for_and_keys() -> None:
    assert block_cidr_for("10.1.2.77", 26) == "10.1.2.64/26"
    assert keys.block_key("10.1.2.64/26") == "/calico/ipam/v2/assignment/ipv4/block/10.1.2.64-26"
    assert keys.affinity_key("n1", "fd00::/122") == "/calico/ipam/v2/host/n1/ipv6/block/fd00::-122"
    assert keys.handle_key("k8s-pod-network.x") == "/calico/ipam/v2/handle/k8s-pod-network.x"
    assert keys.parse_block_key(keys.block_key("fd00::40/122")) == "fd00::40/122"
    assert keys.parse_affinity_key(keys.affinity_key("n1", "10.0.0.0/26")) == ("n1", "10.0.0.0/26")
    assert keys.parse_handle_key("/calico/ipam/v2/handle/h") == "h"
    assert keys.parse_block_key("/calico/ipam/v2/assignment/ipv4/block/bad") is None
    assert keys.parse_affinity_key("/calico/ipam/v2/host/n1/ipv4/block/bad-x") is None


def test_handle_and_affinity_records() -> None:
    h = Handle("k8s-pod-network.c1")
    h.increment("10.0.0.0/26", 2)
    assert json.loads(h.to_json()) == {
        "handleID": "k8s-pod-network.c1",
        "block": {"10.0.0.0/26": 2},
        "deleted": False,
    }
    assert Handle.from_json("x", b'{"block": {"10.0.0.0/26": 2}, "deleted": false}').block == {
        "10.0.0.0/26": 2
    }
    assert h.decrement("10.0.0.0/26", 1) and h.block == {"10.0.0.0/26": 1}
    assert not h.decrement("10.0.0.0/26", 5) and h.empty
    assert json.loads(BlockAffinity(AffinityState.PENDING).to_json()) == {
        "state": "pending",
        "deleted": False,
    }
    assert BlockAffinity.from_json(b"{}").state is AffinityState.CONFIRMED
    with pytest.raises(RecordFormatError):
        BlockAffinity.from_json(b'{"state": "weird"}')
    with pytest.raises(RecordFormatError):
        Handle.from_json("x", b'{"block": {"nope": 1}}')


# -- properties -----------------------------------------------------------------------------

HANDLES = st.sampled_from(["a", "b", "c"])


class BlockMachine(RuleBasedStateMachine):
    """Random allocate/assign/release sequences against a model of who holds what."""

    def __init__(self) -> None:
        super().__init__()
        self.block = AllocationBlock.new("10.9.0.0/28", "h", 7)
        self.held: dict[str, str] = {}  # address -> handle

    @rule(num=st.integers(0, 6), handle=HANDLES)
    def allocate(self, num: int, handle: str) -> None:
        free_before = self.block.num_free
        got = self.block.auto_assign(num, handle, {"k": handle})
        assert len(got) == min(num, free_before)
        assert not set(got) & set(self.held), "an address was handed out twice"
        self.held.update(dict.fromkeys(got, handle))

    @rule(ordinal=st.integers(0, 15), handle=HANDLES)
    def assign(self, ordinal: int, handle: str) -> None:
        address = f"10.9.0.{ordinal}"
        if address in self.held:
            with pytest.raises(AddressInUse):
                self.block.assign(address, handle, {})
        else:
            self.block.assign(address, handle, {})
            self.held[address] = handle

    @rule(ordinals=st.lists(st.integers(0, 15), max_size=5))
    def release(self, ordinals: list[int]) -> None:
        addresses = [f"10.9.0.{o}" for o in ordinals]
        result = self.block.release([ReleaseSpec(a) for a in addresses])
        expected: dict[str, int] = {}
        for address in dict.fromkeys(addresses):
            if address in self.held:
                handle = self.held.pop(address)
                expected[handle] = expected.get(handle, 0) + 1
        assert result.handle_counts == expected
        assert set(result.unallocated) == set(addresses) - set(result.released)

    @precondition(lambda self: bool(self.held))
    @rule(handle=HANDLES)
    def release_handle(self, handle: str) -> None:
        mine = [a for a, h in self.held.items() if h == handle]
        assert sorted(self.block.ips_by_handle(handle)) == sorted(mine)
        assert self.block.release_by_handle(handle) == len(mine)
        for address in mine:
            del self.held[address]

    @invariant()
    def consistent(self) -> None:
        b = self.block
        assert {a.address: a.attribute.handle_id for a in b.allocated()} == self.held
        assert sorted(b.unallocated) == [o for o, i in enumerate(b.allocations) if i is None]
        assert len(b.attributes) == len({i for i in b.allocations if i is not None})
        assert AllocationBlock.from_json(b.to_json()) == b


TestBlockMachine = BlockMachine.TestCase
TestBlockMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


@given(
    cidr=st.sampled_from(["10.0.0.0/30", "10.0.0.64/26", "fd00::/124"]),
    host=st.one_of(st.none(), st.text("abc-.", min_size=1, max_size=8)),
    handles=st.lists(st.tuples(st.text(max_size=5), st.integers(0, 5)), max_size=6),
    seq=st.integers(0, 2**63),
)
def test_json_round_trip(
    cidr: str, host: str | None, handles: list[tuple[str, int]], seq: int
) -> None:
    b = AllocationBlock.new(cidr, host, seq, "2024-01-01T00:00:00Z")
    for handle, num in handles:
        b.auto_assign(num, handle, {"pod": handle} if handle else {})
    assert AllocationBlock.from_json(b.to_json()) == b
