"""IPAMClient on the in-memory datastore: affinity, borrowing, limits, pools, release, rollback."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

import pytest

from calico.datastore.api import DatastoreUnavailable, KeyValue
from calico.datastore.client import ResourceClient
from calico.datastore.memory import MemoryBackend
from calico.ipam import keys
from calico.ipam.allocator import IPAMClient
from calico.ipam.api import (
    AddressInUse,
    AddressNotInPool,
    AffinityMismatch,
    AutoAssignRequest,
    BlockLimitReached,
    IPAMError,
    NoPoolsAvailable,
    PoolsExhausted,
    RetriesExhausted,
)
from calico.ipam.blocks import AllocationBlock
from calico.ipam.records import AffinityState
from calico.model.network import IPPool

PoolMaker = Callable[..., Any]


def request(
    handle: str, host: str = "host-a", v4: int = 1, v6: int = 0, **kw: Any
) -> AutoAssignRequest:
    return AutoAssignRequest(handle_id=handle, hostname=host, num_ipv4=v4, num_ipv6=v6, **kw)


def state(backend: MemoryBackend) -> dict[str, Any]:
    """Everything IPAM keeps, decoded, up to write counters and the free list's order."""
    result = {}
    for kv in backend.list("/calico/ipam/v2/").items:
        data = json.loads(kv.value)
        if "unallocated" in data:
            data["unallocated"] = sorted(data["unallocated"])
            del data["sequenceNumber"]
        result[kv.key] = data
    return result


def blocks(backend: MemoryBackend) -> dict[str, AllocationBlock]:
    items = backend.list(keys.BLOCKS_PREFIX).items
    return {b.cidr: b for b in (AllocationBlock.from_json(kv.value) for kv in items)}


def handle_counts(backend: MemoryBackend) -> dict[str, dict[str, int]]:
    items = backend.list(keys.HANDLES_PREFIX).items
    return {keys.parse_handle_key(kv.key) or "": json.loads(kv.value)["block"] for kv in items}


def assert_consistent(backend: MemoryBackend) -> None:
    """Handle records count exactly what the blocks hold; every block has its affinity."""
    expected: dict[str, dict[str, int]] = {}
    for cidr, block in blocks(backend).items():
        for handle, count in block.handle_counts().items():
            expected.setdefault(handle, {})[cidr] = count
        if block.host:
            aff = backend.get(keys.affinity_key(block.host, cidr))
            assert aff is not None and json.loads(aff.value)["state"] == "confirmed"
    assert handle_counts(backend) == expected
    for kv in backend.list(keys.HOSTS_PREFIX).items:
        assert json.loads(kv.value)["state"] == "confirmed", kv.key


@pytest.fixture
def pool24(make_pool: PoolMaker) -> None:
    make_pool("pool-a", "10.0.0.0/24", block_size=29)


# -- affinity and allocation order ----------------------------------------------------------


@pytest.mark.usefixtures("pool24")
def test_first_assignment_claims_a_confirmed_affine_block(
    ipam: IPAMClient, backend: MemoryBackend
) -> None:
    result = ipam.auto_assign(request("k8s-pod-network.c1", attrs={"pod": "p1", "namespace": "ns"}))
    (address,) = result.ipv4
    assert result.ipv6 == () and address.endswith("/29")
    ip, _ = address.split("/")
    ((cidr, block),) = blocks(backend).items()
    assert block.host == "host-a" and block.ordinal_of(ip) == 0
    assert block.attribute_of(ip).secondary == {"pod": "p1", "namespace": "ns", "node": "host-a"}  # type: ignore[union-attr]
    assert block.affinity_claim_time is not None
    assert handle_counts(backend) == {"k8s-pod-network.c1": {cidr: 1}}
    assert ipam.ips_by_handle("k8s-pod-network.c1") == [ip]
    assert_consistent(backend)


@pytest.mark.usefixtures("pool24")
def test_host_reuses_its_block_then_claims_another(
    ipam: IPAMClient, backend: MemoryBackend
) -> None:
    first = ipam.auto_assign(request("h1", v4=5)).ipv4
    second = ipam.auto_assign(request("h2", v4=5)).ipv4
    nets = {ipaddress.ip_interface(a).network for a in first + second}
    assert len(nets) == 2 and len(set(first + second)) == 10
    assert all(b.host == "host-a" for b in blocks(backend).values())
    assert len(backend.list(keys.affinities_prefix("host-a", 4)).items) == 2
    assert_consistent(backend)


@pytest.mark.usefixtures("pool24")
def test_released_addresses_are_reused_last(ipam: IPAMClient) -> None:
    (a, _b, _c) = ipam.auto_assign(request("h", v4=3)).ipv4
    assert ipam.release_ips([a.split("/")[0]]) == []
    (d,) = ipam.auto_assign(request("h2")).ipv4
    assert ipaddress.ip_interface(d).ip == ipaddress.ip_interface(a).ip + 3


@pytest.mark.usefixtures("pool24")
def test_two_hosts_get_different_blocks(ipam: IPAMClient, backend: MemoryBackend) -> None:
    ipam.auto_assign(request("a", host="host-a"))
    ipam.auto_assign(request("b", host="host-b"))
    assert sorted(b.host or "" for b in blocks(backend).values()) == ["host-a", "host-b"]


# -- borrowing, strict affinity, limits -----------------------------------------------------


@pytest.fixture
def pool28(make_pool: PoolMaker) -> None:
    """Two /29 blocks: 16 addresses."""
    make_pool("small", "10.1.0.0/28", block_size=29)


@pytest.mark.usefixtures("pool28")
def test_borrows_from_another_hosts_block_when_no_block_is_free(
    ipam: IPAMClient, backend: MemoryBackend
) -> None:
    ipam.auto_assign(request("a", host="host-a", v4=4))
    ipam.auto_assign(request("b", host="host-b", v4=8))
    (borrowed,) = ipam.auto_assign(request("b2", host="host-b")).ipv4
    ip = borrowed.split("/")[0]
    owner = next(b for b in blocks(backend).values() if b.ordinal_of(ip) is not None)
    assert owner.host == "host-a"
    assert owner.attribute_of(ip).secondary["node"] == "host-b"  # type: ignore[union-attr]
    assert_consistent(backend)


@pytest.mark.usefixtures("pool28")
def test_strict_affinity_never_borrows(
    ipam: IPAMClient, backend: MemoryBackend, configure: Callable[..., None]
) -> None:
    configure(strictAffinity=True)
    ipam.auto_assign(request("a", host="host-a", v4=4))
    ipam.auto_assign(request("b", host="host-b", v4=8))
    before = state(backend)
    with pytest.raises(PoolsExhausted, match="strictAffinity"):
        ipam.auto_assign(request("b2", host="host-b"))
    assert state(backend) == before


@pytest.mark.usefixtures("pool24")
def test_max_blocks_per_host(
    ipam: IPAMClient, backend: MemoryBackend, configure: Callable[..., None]
) -> None:
    configure(strictAffinity=True, maxBlocksPerHost=1)
    ipam.auto_assign(request("a", v4=8))
    before = state(backend)
    with pytest.raises(BlockLimitReached, match="already holds 1"):
        ipam.auto_assign(request("b"))
    assert state(backend) == before
    assert ipam.auto_assign(request("c", host="host-b")).ipv4


@pytest.mark.usefixtures("pool28")
def test_without_auto_allocation_only_existing_blocks_are_used(
    ipam: IPAMClient, backend: MemoryBackend, configure: Callable[..., None]
) -> None:
    configure(autoAllocateBlocks=False)
    with pytest.raises(PoolsExhausted):
        ipam.auto_assign(request("a"))
    configure(autoAllocateBlocks=True)
    ipam.auto_assign(request("a", host="host-a"))
    configure(autoAllocateBlocks=False)
    (ip,) = ipam.auto_assign(request("b", host="host-b")).ipv4  # borrowed
    assert len(blocks(backend)) == 1 and ipaddress.ip_interface(ip).network.prefixlen == 29


@pytest.mark.usefixtures("pool28")
def test_exhausted_pool_is_all_or_nothing(ipam: IPAMClient, backend: MemoryBackend) -> None:
    ipam.auto_assign(request("a", v4=10))
    before = state(backend)
    with pytest.raises(PoolsExhausted, match="assigned 6 of 7"):
        ipam.auto_assign(request("b", host="host-b", v4=7))
    assert state(backend) == before
    assert ipam.ips_by_handle("b") == []
    assert len(ipam.auto_assign(request("c", host="host-b", v4=6)).ipv4) == 6


# -- pool selection -------------------------------------------------------------------------


def test_no_pool_disabled_pool_and_unknown_requested_pool(
    ipam: IPAMClient, make_pool: PoolMaker
) -> None:
    with pytest.raises(NoPoolsAvailable):
        ipam.auto_assign(request("a"))
    make_pool("off", "10.2.0.0/24", disabled=True)
    with pytest.raises(NoPoolsAvailable, match="no configured Calico IPv4 pools"):
        ipam.auto_assign(request("a"))
    with pytest.raises(NoPoolsAvailable, match=r"the given pool \(off\)"):
        ipam.auto_assign(request("a", ipv4_pools=["off"]))
    make_pool("tunnels", "10.3.0.0/24", allowedUses=["Tunnel"])
    with pytest.raises(NoPoolsAvailable, match="allows use Workload"):
        ipam.auto_assign(request("a"))
    (tunnel,) = ipam.auto_assign(request("t", intended_use="Tunnel")).ipv4
    assert tunnel.startswith("10.3.0.")  # the intended use picks the pool
    make_pool("workloads", "10.6.0.0/24", allowedUses=["Workload"])
    with pytest.raises(NoPoolsAvailable, match="allows use Tunnel"):
        ipam.auto_assign(request("t2", intended_use="Tunnel", ipv4_pools=["workloads"]))


def test_node_selector_uses_node_labels(
    ipam: IPAMClient, make_pool: PoolMaker, add_node: Callable[..., None]
) -> None:
    make_pool("rack-a", "10.4.0.0/24", nodeSelector='rack == "a"')
    make_pool("rack-b", "10.5.0.0/24", nodeSelector='rack == "b"')
    add_node("host-a", rack="a")
    add_node("host-b", rack="b")
    (a,) = ipam.auto_assign(request("a", host="host-a")).ipv4
    (b,) = ipam.auto_assign(request("b", host="host-b")).ipv4
    assert a.startswith("10.4.0.") and b.startswith("10.5.0.")
    with pytest.raises(NoPoolsAvailable):
        ipam.auto_assign(request("c", host="no-node"))
    (c,) = ipam.auto_assign(request("c", host="no-node", ipv4_pools=["10.5.0.0/24"])).ipv4
    assert c.startswith("10.5.0.")


def test_requested_pools_by_name_and_manual_assignment_mode(
    ipam: IPAMClient, make_pool: PoolMaker
) -> None:
    make_pool("auto", "10.6.0.0/24")
    make_pool("manual", "10.7.0.0/24", assignmentMode="Manual")
    assert ipam.auto_assign(request("a")).ipv4[0].startswith("10.6.0.")
    assert ipam.auto_assign(request("b", ipv4_pools=["manual"])).ipv4[0].startswith("10.7.0.")


def test_dual_stack_and_ipv6_failure_rolls_back_ipv4(
    ipam: IPAMClient, backend: MemoryBackend, make_pool: PoolMaker
) -> None:
    make_pool("v4", "10.8.0.0/24")
    make_pool("v6", "fd00:8::/120", block_size=122)
    result = ipam.auto_assign(request("a", v4=1, v6=2))
    assert len(result.ipv4) == 1 and len(result.ipv6) == 2
    assert result.ipv6[0].startswith("fd00:8::") and result.ipv6[0].endswith("/122")
    before = handle_counts(backend)
    with pytest.raises(PoolsExhausted, match="IPv6"):
        ipam.auto_assign(request("b", v4=1, v6=300))
    assert handle_counts(backend) == before  # the blocks it claimed stay with the host
    assert sum(b.in_use for b in blocks(backend).values()) == 3
    assert_consistent(backend)


# -- assign_ip ------------------------------------------------------------------------------


@pytest.mark.usefixtures("pool24")
def test_assign_ip(
    ipam: IPAMClient, backend: MemoryBackend, configure: Callable[..., None]
) -> None:
    ipam.assign_ip("10.0.0.77", "fixed", "host-a", {"pod": "p"})
    assert ipam.ips_by_handle("fixed") == ["10.0.0.77"]
    assert blocks(backend)["10.0.0.72/29"].host == "host-a"
    with pytest.raises(AddressInUse):
        ipam.assign_ip("10.0.0.77", "other", "host-a")
    with pytest.raises(AddressNotInPool):
        ipam.assign_ip("192.0.2.1", "other", "host-a")
    with pytest.raises(IPAMError, match="not a valid IP"):
        ipam.assign_ip("nope", "other", "host-a")
    ipam.assign_ip("10.0.0.78", "other", "host-b")  # borrowing is fine when not strict
    configure(strictAffinity=True)
    with pytest.raises(AffinityMismatch):
        ipam.assign_ip("10.0.0.79", "other", "host-b")
    assert_consistent(backend)


# -- release --------------------------------------------------------------------------------


@pytest.mark.usefixtures("pool24")
def test_release_by_ip(ipam: IPAMClient, backend: MemoryBackend) -> None:
    ips = [a.split("/")[0] for a in ipam.auto_assign(request("h", v4=3)).ipv4]
    assert ipam.release_ips([ips[0], "10.0.0.200", "192.0.2.9", ips[0]]) == [
        "10.0.0.200",
        "192.0.2.9",
    ]
    assert ipam.ips_by_handle("h") == ips[1:]
    assert ipam.release_ips(ips[1:]) == []
    assert handle_counts(backend) == {}
    assert len(blocks(backend)) == 1  # an affine block stays with its host when empty
    assert_consistent(backend)


@pytest.mark.usefixtures("pool24")
def test_release_by_handle_is_idempotent(ipam: IPAMClient, backend: MemoryBackend) -> None:
    ipam.auto_assign(request("h", v4=12))
    ipam.auto_assign(request("keep"))
    ipam.release_by_handle("h")
    ipam.release_by_handle("h")
    ipam.release_by_handle("never-existed")
    assert ipam.ips_by_handle("h") == [] and len(ipam.ips_by_handle("keep")) == 1
    assert set(handle_counts(backend)) == {"keep"}
    assert_consistent(backend)


@pytest.mark.usefixtures("pool24")
def test_empty_non_affine_block_is_deleted_on_release(
    ipam: IPAMClient, backend: MemoryBackend
) -> None:
    orphan = AllocationBlock.new("10.0.0.128/29", None, 1)
    backend.create(keys.block_key(orphan.cidr), orphan.to_json())
    ipam.assign_ip("10.0.0.130", "x", "host-a")
    assert blocks(backend)["10.0.0.128/29"].affinity is None
    ipam.release_by_handle("x")
    assert "10.0.0.128/29" not in blocks(backend)
    ipam.assign_ip("10.0.0.130", "y", "host-a")  # claims the block for host-a now
    assert blocks(backend)["10.0.0.128/29"].host == "host-a"


@pytest.mark.usefixtures("pool24")
def test_usage_and_allocation_lookup(ipam: IPAMClient) -> None:
    (a,) = ipam.auto_assign(request("h", attrs={"pod": "p"})).ipv4
    ip = a.split("/")[0]
    (pool,) = ipam.usage()
    assert (pool.name, pool.capacity, pool.in_use, pool.free) == ("pool-a", 256, 1, 255)
    assert [(b.capacity, b.in_use) for b in pool.blocks] == [(8, 1)]
    attr = ipam.allocation_of(ip)
    assert attr is not None and attr.handle_id == "h" and attr.secondary["pod"] == "p"
    assert ipam.allocation_of("10.0.0.255") is None and ipam.allocation_of("192.0.2.1") is None


# -- failures and races ---------------------------------------------------------------------


class FlakyBackend(MemoryBackend):
    """A MemoryBackend whose chosen writes apply and then report the connection lost."""

    def __init__(self, fail: Callable[[str, int], bool]) -> None:
        super().__init__()
        self.fail = fail
        self.writes = 0
        self.down = False

    def _maybe_fail(self, key: str) -> None:
        self.writes += 1
        if self.fail(key, self.writes):
            raise DatastoreUnavailable(f"lost the reply for {key}")

    def create(self, key: str, value: bytes, lease: int = 0) -> int:
        revision = super().create(key, value, lease)
        self._maybe_fail(key)
        return revision

    def update(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> int:
        revision = super().update(key, value, mod_revision, lease)
        self._maybe_fail(key)
        return revision

    def delete(self, key: str, mod_revision: int | None = None) -> KeyValue:
        previous = super().delete(key, mod_revision)
        self._maybe_fail(key)
        return previous


def _flaky(
    fail: Callable[[str, int], bool], pool: dict[str, Any]
) -> tuple[FlakyBackend, IPAMClient]:
    backend = FlakyBackend(lambda key, n: False)
    ResourceClient(backend).create(IPPool.model_validate(pool))
    backend.fail = fail
    return backend, IPAMClient(backend, sleep=lambda _: None, cleanup_timeout=1.0)


POOL_SPEC = {"metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/24", "blockSize": 29}}


@pytest.mark.parametrize(
    ("what", "nth"),
    [("/assignment/", n) for n in (1, 2, 3)]
    + [(kind, n) for kind in ("/host/", "/handle/") for n in (1, 2)],
)
def test_lost_reply_rolls_back_everything(what: str, nth: int) -> None:
    """A write that applied but whose reply was lost is undone along with the rest."""
    backend, ipam = _flaky(lambda key, n: False, POOL_SPEC)
    ipam.auto_assign(request("first"))  # the next request uses this block, then claims more
    seen: list[str] = []

    def fail(key: str, _: int) -> bool:
        if what in key:
            seen.append(key)
        return len(seen) == nth and what in key

    backend.fail = fail
    with pytest.raises(DatastoreUnavailable):
        ipam.auto_assign(request("h", v4=9))
    assert ipam.ips_by_handle("h") == []
    assert all("h" not in b.handle_counts() for b in blocks(backend).values())
    assert_consistent(backend)


def test_rollback_waits_for_the_datastore_to_return() -> None:
    calls: list[float] = []
    backend, ipam = _flaky(lambda key, n: False, POOL_SPEC)
    ipam.auto_assign(request("first"))

    def fail(key: str, n: int) -> bool:
        if "/assignment/" in key and not backend.down:
            backend.down = True
            backend.set_unavailable(True)
            return True
        return False

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 3:
            backend.set_unavailable(False)

    backend.fail = fail
    ipam = IPAMClient(backend, sleep=sleep, cleanup_timeout=60.0)
    with pytest.raises(DatastoreUnavailable):
        ipam.auto_assign(request("h", v4=2))
    assert len(calls) == 3
    assert ipam.ips_by_handle("h") == []
    assert_consistent(backend)


class RacingBackend(MemoryBackend):
    """Before our chosen block updates, another allocator gets in first."""

    def __init__(self) -> None:
        super().__init__()
        self.rival: IPAMClient | None = None
        self.races = 0

    def update(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> int:
        if self.rival is not None and "/assignment/" in key and self.races < 3:
            self.races += 1
            rival, self.rival = self.rival, None
            rival.auto_assign(request(f"rival-{self.races}", host="host-a"))
            self.rival = rival
        return super().update(key, value, mod_revision, lease)


def test_cas_conflicts_are_retried_without_duplicates() -> None:
    backend = RacingBackend()
    ResourceClient(backend).create(IPPool.model_validate(POOL_SPEC))
    ipam = IPAMClient(backend)
    ipam.auto_assign(request("seed"))
    backend.rival = IPAMClient(backend)
    got = ipam.auto_assign(request("mine", v4=3)).ipv4
    backend.rival = None
    assert backend.races == 3
    everyone = [a.address for b in blocks(backend).values() for a in b.allocated()]
    assert len(everyone) == len(set(everyone)) == 1 + 3 + 3
    assert {a.split("/")[0] for a in got} == set(ipam.ips_by_handle("mine"))
    assert_consistent(backend)


def test_retries_are_bounded(make_pool: PoolMaker, backend: MemoryBackend) -> None:
    make_pool("p", "10.0.0.0/24", block_size=29)

    ipam = IPAMClient(backend, max_retries=3)
    ipam.auto_assign(request("seed"))
    original = backend.update

    def conflicting(key: str, value: bytes, mod_revision: int, lease: int = 0) -> int:
        if "/assignment/" in key:
            return original(key, value, mod_revision - 1, lease)
        return original(key, value, mod_revision, lease)

    backend.update = conflicting  # type: ignore[method-assign]
    with pytest.raises(RetriesExhausted, match="3 attempts"):
        ipam.auto_assign(request("h"))
    backend.update = original  # type: ignore[method-assign]
    assert ipam.ips_by_handle("h") == []
    assert_consistent(backend)


@pytest.mark.usefixtures("pool24")
def test_pending_affinity_left_by_a_crash_is_completed(
    ipam: IPAMClient, backend: MemoryBackend
) -> None:
    """An affinity whose block was never created is finished by the host's next request."""
    backend.create(
        keys.affinity_key("host-a", "10.0.0.64/29"), b'{"state":"pending","deleted":false}'
    )
    (address,) = ipam.auto_assign(request("h")).ipv4
    assert address.startswith("10.0.0.6") or address.startswith("10.0.0.7")
    aff = json.loads(backend.get(keys.affinity_key("host-a", "10.0.0.64/29")).value)  # type: ignore[union-attr]
    assert aff["state"] == AffinityState.CONFIRMED.value
    assert_consistent(backend)


@pytest.mark.usefixtures("pool24")
def test_stale_affinity_is_dropped(ipam: IPAMClient, backend: MemoryBackend) -> None:
    ipam.auto_assign(request("b", host="host-b"))
    (cidr,) = blocks(backend)
    backend.create(keys.affinity_key("host-a", cidr), b'{"state":"confirmed","deleted":false}')
    (address,) = ipam.auto_assign(request("a", host="host-a")).ipv4
    assert ipaddress.ip_interface(address).network != ipaddress.ip_network(cidr)
    assert backend.get(keys.affinity_key("host-a", cidr)) is None
    assert_consistent(backend)


class CountingBackend(MemoryBackend):
    """Counts the requests a real etcd would see (one per call)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def get(self, key: str) -> KeyValue | None:
        self.calls.append(("get", key))
        return super().get(key)

    def list(self, prefix: str) -> Any:
        self.calls.append(("list", prefix))
        return super().list(prefix)

    def create(self, key: str, value: bytes, lease: int = 0) -> int:
        self.calls.append(("create", key))
        return super().create(key, value, lease)

    def update(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> int:
        self.calls.append(("update", key))
        return super().update(key, value, mod_revision, lease)


def test_assignment_from_an_affine_block_takes_six_round_trips() -> None:
    """The CNI ADD's IPAM share: pools, IPAMConfiguration, the host's affinities, its block
    (read once), the new handle (created unread), the block write; no Node read when no pool
    has a nodeSelector."""
    backend = CountingBackend()
    ResourceClient(backend).create(
        IPPool.model_validate({"metadata": {"name": "p"}, "spec": {"cidr": "198.19.0.0/24"}})
    )
    ipam = IPAMClient(backend)
    (first,) = ipam.auto_assign(request("h1")).ipv4
    backend.calls.clear()
    ipam.auto_assign(request("h2"))
    verbs = [verb for verb, _ in backend.calls]
    assert verbs == ["list", "get", "list", "get", "create", "update"], backend.calls
    block = keys.block_key(str(ipaddress.ip_interface(first).network))
    assert [k for _, k in backend.calls].count(block) == 2  # one read, one write


class _CountingDeletes(CountingBackend):
    """Also counts deletes; `before_delete` runs first (another writer getting in)."""

    def __init__(self) -> None:
        super().__init__()
        self.before_delete: Callable[[], None] = lambda: None

    def delete(self, key: str, mod_revision: int | None = None) -> KeyValue:
        self.calls.append(("delete", key))
        hook, self.before_delete = self.before_delete, lambda: None
        hook()
        return super().delete(key, mod_revision)


def _released_setup() -> tuple[_CountingDeletes, IPAMClient]:
    backend = _CountingDeletes()
    ResourceClient(backend).create(
        IPPool.model_validate({"metadata": {"name": "p"}, "spec": {"cidr": "198.19.0.0/24"}})
    )
    return backend, IPAMClient(backend)


def test_release_by_handle_takes_three_round_trips() -> None:
    """The CNI DEL's IPAM share: the handle, its block (read, written); the handle is then
    deleted on the revision read, not read again with its blocks."""
    backend, ipam = _released_setup()
    ipam.auto_assign(request("h1"))
    backend.calls.clear()
    ipam.release_by_handle("h1")
    assert [verb for verb, _ in backend.calls] == ["get", "get", "update", "delete"]
    assert ipam.ips_by_handle("h1") == [] and handle_counts(backend) == {}
    assert_consistent(backend)


def test_handle_counted_again_while_releasing_is_recounted_from_the_blocks() -> None:
    """An allocation under the same handle counted between the release's read of the handle
    and its delete (allocations count the handle, then write the block) is kept: the delete's
    compare fails and the counts come from the blocks."""
    backend, ipam = _released_setup()
    ipam.auto_assign(request("h1"))
    backend.before_delete = lambda: ipam.auto_assign(request("h1"))
    ipam.release_by_handle("h1")
    assert len(ipam.ips_by_handle("h1")) == 1
    assert [sum(counts.values()) for counts in handle_counts(backend).values()] == [1]
    assert_consistent(backend)
