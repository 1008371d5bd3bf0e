"""`IPAMClient`: Calico's IPAM (`calico.ipam.api.IPAM`) over a datastore `Backend`.

auto_assign, per address family (libcalico-go `ipam.go` autoAssign):
1. pools: requested ones, else enabled pools whose nodeSelector matches the host's Node labels,
   allowing the Workload use (`calico.ipam.pools`);
2. the host's affine blocks, lowest free ordinals first;
3. when short, claim a new block (`calico.ipam.affinity`) if autoAllocateBlocks and the host
   holds fewer than maxBlocksPerHost blocks (0 means Calico's safeguard of 20); at the limit the
   request fails with BlockLimitReached, as Calico's ErrBlockLimit;
4. when still short and strictAffinity is off, borrow from any block with room.

Each block write is CAS on the revision read, retried up to 100 times on a lost race; the
handle's count is raised before the block write (lowered again if that write loses) so a crash
can leave a handle over-counted (harmless, reported by `ipam check`) but never an address
without its handle. The request is all or nothing: on any failure everything it wrote is undone
(`calico.ipam.undo`), patiently through an outage, before the error propagates. Datastore
failures surface as `calico.datastore.api.DatastoreError`, everything else as `IPAMError`.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from calico.datastore.api import Backend, RevisionConflict
from calico.datastore.client import ResourceClient, ResourceNotFound
from calico.ipam.affinity import AffinityClaimer
from calico.ipam.api import (
    AddressNotInPool,
    AffinityMismatch,
    AutoAssignRequest,
    AutoAssignResult,
    BlockLimitReached,
    IPAMError,
    PoolsExhausted,
)
from calico.ipam.blocks import (
    AllocationAttribute,
    AllocationBlock,
    ReleaseResult,
    ReleaseSpec,
    block_cidr_for,
    candidate_rank,
)
from calico.ipam.pools import (
    block_size,
    pool_containing,
    pool_for_block,
    select_pools,
    selects_any_node,
)
from calico.ipam.records import BlockAffinity
from calico.ipam.release import Releaser
from calico.ipam.store import RACES, IPAMStore, Stored
from calico.ipam.undo import Patience, UndoLog
from calico.ipam.usage import PoolUsage, utilization
from calico.model.network import IPAMConfiguration, IPAMConfigurationSpec, IPPool, Node

log = logging.getLogger(__name__)
BLOCKS_PER_HOST_SAFEGUARD = 20


@dataclass(slots=True)
class _Request:
    """One family's share of an auto_assign: who, how many, from where, and what is done."""

    host: str
    version: int
    num: int
    handle_id: str
    attrs: Mapping[str, str]
    pools: list[IPPool]
    config: IPAMConfigurationSpec
    undo: UndoLog
    affine: list[tuple[str, Stored[BlockAffinity]]] = field(default_factory=list)
    owned: int = 0

    @property
    def mine(self) -> str:
        return f"host:{self.host}"


class IPAMClient:
    """Thread-safe when its backend is; holds no state between calls."""

    def __init__(
        self,
        backend: Backend,
        *,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        cleanup_timeout: float = 30.0,
        max_retries: int = 100,
    ) -> None:
        self.store = IPAMStore(backend, max_retries)
        self.resources = ResourceClient(backend)
        self.claimer = AffinityClaimer(self.store, now)
        self._sleep = sleep
        self._cleanup_timeout = cleanup_timeout
        self._releaser = Releaser(self.store, self._patience)

    # -- configuration ----------------------------------------------------------------------

    def ipam_config(self) -> IPAMConfigurationSpec:
        """IPAMConfiguration `default`, or Calico's defaults when there is none."""
        try:
            spec = self.resources.get(IPAMConfiguration, "default").spec
        except ResourceNotFound:
            spec = IPAMConfigurationSpec()
        return IPAMConfigurationSpec(
            strictAffinity=bool(spec.strictAffinity),
            autoAllocateBlocks=spec.autoAllocateBlocks is not False,
            maxBlocksPerHost=spec.maxBlocksPerHost or 0,
        )

    def pools(self) -> list[IPPool]:
        return [p for p in self.resources.list(IPPool).items if isinstance(p, IPPool)]

    def node_labels(self, host: str) -> dict[str, str]:
        """The host's Node labels; a host without a Node resource has none (Calico errors)."""
        try:
            return dict(self.resources.get(Node, host).metadata.labels or {})
        except ResourceNotFound:
            log.debug("no Node resource for %s: selecting pools with empty labels", host)
            return {}

    # -- the IPAM contract ------------------------------------------------------------------

    def auto_assign(self, request: AutoAssignRequest) -> AutoAssignResult:
        if request.num_ipv4 < 0 or request.num_ipv6 < 0 or not request.handle_id:
            raise IPAMError("auto_assign needs a handle and non-negative address counts")
        undo = UndoLog(request.handle_id)
        with self._undo_on_failure(undo):
            v4 = self._assign_family(request, 4, request.num_ipv4, request.ipv4_pools, undo)
            v6 = self._assign_family(request, 6, request.num_ipv6, request.ipv6_pools, undo)
        return AutoAssignResult(tuple(v4), tuple(v6))

    def assign_ip(
        self, address: str, handle_id: str, hostname: str, attrs: Mapping[str, str] | None = None
    ) -> None:
        ip = _parse_ip(address)
        pool = pool_containing([p for p in self.pools() if not p.spec.disabled], str(ip))
        if pool is None:
            raise AddressNotInPool(f"{ip} is not in any enabled IP pool")
        cidr = block_cidr_for(str(ip), block_size(pool))
        strict = bool(self.ipam_config().strictAffinity)
        undo = UndoLog(handle_id)
        attributes = {"node": hostname, **(attrs or {})}
        with self._undo_on_failure(undo):
            self.store.retrying(
                f"block {cidr}",
                lambda: self._assign_one(cidr, str(ip), hostname, attributes, strict, undo),
            )

    def release_ips(self, addresses: Sequence[str]) -> list[str]:
        return self._releaser.release_ips([str(_parse_ip(a)) for a in addresses], self.pools())

    def release_by_handle(self, handle_id: str) -> None:
        self._releaser.release_by_handle(handle_id)

    def ips_by_handle(self, handle_id: str) -> list[str]:
        stored = self.store.get_handle(handle_id)
        if stored is None:
            return []
        ips: list[str] = []
        for cidr in sorted(stored.value.block, key=_net_key):
            block = self.store.get_block(cidr)
            ips.extend(block.value.ips_by_handle(handle_id) if block else [])
        return ips

    # -- what calicoctl needs ---------------------------------------------------------------

    def blocks(self) -> list[AllocationBlock]:
        return sorted((s.value for s in self.store.list_blocks()), key=lambda b: _net_key(b.cidr))

    def release_matching(self, specs: Sequence[ReleaseSpec]) -> ReleaseResult:
        """Release only allocations that still carry the spec's handle and sequence number."""
        return self._releaser.release(
            [replace(s, address=str(_parse_ip(s.address))) for s in specs], self.pools()
        )

    def usage(self) -> list[PoolUsage]:
        return utilization(self.pools(), self.blocks())

    def allocation_of(self, address: str) -> AllocationAttribute | None:
        """The handle and attributes of an allocated address; None if it is not allocated."""
        ip = str(_parse_ip(address))
        pool = pool_containing(self.pools(), ip)
        if pool is not None:
            stored = self.store.get_block(block_cidr_for(ip, block_size(pool)))
            candidates = [stored.value] if stored else []
        else:
            candidates = [b for b in self.blocks() if b.ordinal_of(ip) is not None]
        return next((b.attribute_of(ip) for b in candidates if b.attribute_of(ip)), None)

    # -- auto_assign, one family ------------------------------------------------------------

    def _assign_family(
        self,
        request: AutoAssignRequest,
        version: int,
        num: int,
        wanted: Sequence[str],
        undo: UndoLog,
    ) -> list[str]:
        if num == 0:
            return []
        host = request.hostname
        all_pools = self.pools()
        # The Node's labels matter only to a pool with a real nodeSelector: skipping the read
        # otherwise saves an etcd round trip per CNI ADD.
        labels = self.node_labels(host) if _selects_by_node(all_pools, wanted) else {}
        pools = select_pools(all_pools, version, wanted, host, labels, request.intended_use)
        req = _Request(
            host, version, num, request.handle_id, {"node": host, **request.attrs}, pools,
            self.ipam_config(), undo,
        )  # fmt: skip
        req.affine = self._affine_blocks(req)
        req.owned = len(req.affine)
        ips = self._assign_affine(req)
        if len(ips) < num and not req.config.strictAffinity:
            ips += self._borrow(req, num - len(ips))
        if len(ips) < num:
            names = ", ".join(p.name for p in pools)
            raise PoolsExhausted(
                f"assigned {len(ips)} of {num} requested IPv{version} addresses for host {host}:"
                f" no free addresses in pools {names}"
                + (" (strictAffinity: no borrowing)" if req.config.strictAffinity else "")
            )
        return ips

    def _affine_blocks(self, req: _Request) -> list[tuple[str, Stored[BlockAffinity]]]:
        """The host's affinities of blocks in the usable pools, in address order."""
        listed = [(c, a) for _, c, a in self.store.list_affinities(req.host, req.version)]
        usable = (ca for ca in listed if pool_for_block(req.pools, ca[0]))
        return sorted(usable, key=lambda ca: _net_key(ca[0]))

    def _assign_affine(self, req: _Request) -> list[str]:
        ips: list[str] = []
        for _ in range(req.num + self.store.max_retries):
            if len(ips) >= req.num:
                break
            found = self._next_affine_block(req)
            if found is None:
                break
            cidr, stored = found
            ips += self._assign_from_block(
                req, cidr, req.num - len(ips), affine_only=True, read=stored
            )
        return ips

    def _next_affine_block(self, req: _Request) -> tuple[str, Stored[AllocationBlock]] | None:
        """An affine block with room (as just read), claiming a new one if allowed; None if no
        block is free."""
        while req.affine:
            cidr, aff = req.affine.pop(0)
            stored = self.claimer.block_from_affinity(req.host, cidr, req.undo, aff)
            if stored is not None and stored.value.num_free > 0:
                return cidr, stored
        if req.owned >= (req.config.maxBlocksPerHost or BLOCKS_PER_HOST_SAFEGUARD):
            raise BlockLimitReached(
                f"host {req.host} needs a new IPAM block but already holds {req.owned}"
                " (maxBlocksPerHost)"
            )
        if not req.config.autoAllocateBlocks:
            return None
        for _ in range(self.store.max_retries):
            found = self.claimer.find_usable_block(req.host, req.pools, req.version)
            if found is None:
                return None
            claim = functools.partial(self.claimer.claim, req.host, found, req.undo)
            stored = self.store.retrying(f"claim {found}", claim)
            if stored is not None and stored.value.num_free > 0:
                req.owned += 1
                return found, stored
        return None

    def _borrow(self, req: _Request, num: int) -> list[str]:
        """Take addresses from other hosts' blocks with room, in the host's block order."""
        ips: list[str] = []
        blocks = [s.value for s in self.store.list_blocks(req.version) if s.value.num_free]
        for pool in req.pools:
            rank = candidate_rank(pool.spec.cidr, block_size(pool), req.host)
            mine = [b.cidr for b in blocks if pool_for_block([pool], b.cidr)]
            for cidr in sorted(mine, key=rank):
                if len(ips) >= num:
                    return ips
                ips += self._assign_from_block(req, cidr, num - len(ips), affine_only=False)
        return ips

    def _assign_from_block(
        self,
        req: _Request,
        cidr: str,
        num: int,
        affine_only: bool,
        read: Stored[AllocationBlock] | None = None,
    ) -> list[str]:
        """`read`: the block as the caller just read it, used by the first attempt instead of
        a read (one etcd round trip less per CNI ADD); a lost race reads it again."""
        known = [read] if read is not None else []

        def attempt() -> list[str]:
            stored = known.pop() if known else self.store.get_block(cidr)
            if stored is None or (affine_only and stored.value.affinity != req.mine):
                return []
            seq = stored.value.sequence_number
            ips = stored.value.auto_assign(num, req.handle_id, req.attrs)
            if ips:
                self._write_allocation(stored, ips, seq, req.undo)
            prefix = stored.value.network.prefixlen
            return [f"{ip}/{prefix}" for ip in ips]

        return self.store.retrying(f"block {cidr}", attempt)

    # -- assign_ip --------------------------------------------------------------------------

    def _assign_one(
        self,
        cidr: str,
        address: str,
        host: str,
        attrs: Mapping[str, str],
        strict: bool,
        undo: UndoLog,
    ) -> None:
        stored = self.store.get_block(cidr)
        if stored is None:
            stored = self.claimer.claim(host, cidr, undo)
            if stored is None:
                raise RevisionConflict(f"block {cidr} was claimed by another host")
        block = stored.value
        if strict and block.host != host:
            raise AffinityMismatch(f"{address}: block {cidr} is not affine to {host}")
        seq = block.sequence_number
        block.assign(address, undo.handle_id, attrs)
        self._write_allocation(stored, [address], seq, undo)

    # -- shared -----------------------------------------------------------------------------

    def _write_allocation(
        self, stored: Stored[AllocationBlock], ips: list[str], seq: int, undo: UndoLog
    ) -> None:
        """Count the handle, then CAS the block; a lost race takes the count back."""
        cidr = stored.value.cidr
        undo.handle_blocks.add(cidr)
        self.store.adjust_handle(undo.handle_id, cidr, len(ips))
        undo.add(cidr, ips, seq)
        try:
            self.store.write_block(stored)
        except RACES:
            undo.discard(cidr, ips)
            self.store.adjust_handle(undo.handle_id, cidr, -len(ips))
            raise

    def _patience(self) -> Patience:
        return Patience(self._cleanup_timeout, self._sleep)

    @contextlib.contextmanager
    def _undo_on_failure(self, undo: UndoLog) -> Iterator[None]:
        """On an exception, roll back and re-raise it (a failing cleanup is only logged)."""
        try:
            yield
        except Exception:
            try:
                self.rollback(undo)
            except Exception:
                log.exception("could not undo a failed IPAM assignment of %s", undo.handle_id)
            raise

    def rollback(self, undo: UndoLog) -> None:
        """Undo what an assignment may have written (see calico.ipam.undo)."""
        patience = self._patience()
        for cidr, specs in undo.allocated.items():
            patience.run(functools.partial(self._releaser.release_exact, cidr, specs))
        if undo.handle_blocks:
            patience.run(lambda: self.store.sync_handle(undo.handle_id, undo.handle_blocks))
        for host, cidr in sorted(undo.claims):
            patience.run(functools.partial(self.claimer.settle, host, cidr))


def _selects_by_node(pools: Sequence[IPPool], requested: Sequence[str]) -> bool:
    """Whether choosing among `pools` needs the host's Node labels (see select_pools)."""
    return not requested and not all(selects_any_node(p) for p in pools)


def _parse_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(address.split("/")[0])
    except ValueError:
        raise IPAMError(f"{address!r} is not a valid IP address") from None


def _net_key(cidr: str) -> tuple[int, int]:
    net = ipaddress.ip_network(cidr)
    return net.version, int(net.network_address)
