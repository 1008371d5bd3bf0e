"""This node's VXLAN tunnel addresses, as calico/node's allocateip keeps them.

Per IP version: when an enabled IPPool with a vxlanMode other than Never selects this node
(nodeSelector against the Node's labels) and allows the Tunnel use, the node needs a tunnel
address. An existing `spec.ipv4VXLANTunnelAddr` / `ipv6VXLANTunnelAddr` is kept while it lies
in such a pool and is allocated to the node's tunnel handle (`model.vxlan.tunnel_handle`);
otherwise a new address is allocated from those pools under that handle, with the attributes
Calico writes (`node`, `type: vxlanTunnelAddress` / `vxlanV6TunnelAddress`), recorded on the
Node, and only then is everything else under the handle released. The
Node also gets `vxlanTunnelMACAddr(V6)`: the one it has, else the derived MAC
(`model.vxlan.vtep_mac`). When no such pool applies any more, the address and MAC are cleared
from the Node and then the handle is released, so no Node ever names a released address.

Node writes are compare-and-swap (`ResourceClient.update`), so concurrent writers of the Node
(Felix's status, address re-registration) lose nothing. `TunnelKeeper` re-runs the
reconciliation when a watch reports a change of a pool, the Node or a tunnel handle, and sends
etcd no requests while nothing changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence

from calico.backoff import Backoff
from calico.datastore.api import Backend, DatastoreError, SyncStatus, Update
from calico.datastore.client import ResourceNotFound
from calico.datastore.syncer import Syncer
from calico.ipam.allocator import IPAMClient
from calico.ipam.api import AutoAssignRequest, IPAMError
from calico.ipam.keys import handle_key
from calico.ipam.pools import USE_TUNNEL, pool_containing, pool_version, selects_node
from calico.model.keys import ResourceKey, kind_prefix
from calico.model.network import IPPool, Node
from calico.model.vxlan import tunnel_handle, vtep_mac, vxlan_enabled

log = logging.getLogger(__name__)
ATTRIBUTE_TYPE = {4: "vxlanTunnelAddress", 6: "vxlanV6TunnelAddress"}
_ADDRESS_FIELD = {4: "ipv4VXLANTunnelAddr", 6: "ipv6VXLANTunnelAddr"}
_MAC_FIELD = {4: "vxlanTunnelMACAddr", 6: "vxlanTunnelMACAddrV6"}
_ATTEMPTS = 20


def vxlan_pools(
    pools: Sequence[IPPool], version: int, node_labels: Mapping[str, str]
) -> list[IPPool]:
    """The pools this node takes a VXLAN tunnel address of `version` from (pure)."""
    return [
        p
        for p in pools
        if not p.spec.disabled
        and pool_version(p) == version
        and vxlan_enabled(p.spec.vxlanMode)
        and USE_TUNNEL in (p.spec.allowedUses or (USE_TUNNEL,))
        and selects_node(p, node_labels)
    ]


class TunnelAddresses:
    """Reconciles one node's VXLAN tunnel addresses with the pools (calico/node's allocateip)."""

    def __init__(self, ipam: IPAMClient, nodename: str) -> None:
        self.ipam = ipam
        self.nodename = nodename

    def reconcile(self) -> None:
        """One pass for both IP versions; ResourceNotFound if the Node is not registered."""
        node = self.ipam.resources.get(Node, self.nodename)
        pools = self.ipam.pools()
        labels = dict(node.metadata.labels or {})
        for version in (4, 6):
            usable = vxlan_pools(pools, version, labels)
            current = getattr(node.spec, _ADDRESS_FIELD[version])
            if usable:
                self._ensure(version, current, usable)
            else:
                self._remove(version, current)

    def _ensure(self, version: int, current: str | None, usable: list[IPPool]) -> None:
        """Keep a valid address, else allocate and record a new one before releasing the
        rest of the handle (a crash mid-way leaves at worst a stray the next pass frees)."""
        handle = tunnel_handle(self.nodename, version)
        if current and self._valid(current, usable, handle):
            self._write(version, current)  # the MAC, if the Node lacks it
            keep = current
        else:
            keep = self._allocate(version, usable, handle)
            log.info("VXLAN tunnel address for IPv%d: %s (was %s)", version, keep, current)
        for stray in self.ipam.ips_by_handle(handle):
            if stray != keep:
                self.ipam.release_ips([stray])

    def _allocate(self, version: int, usable: list[IPPool], handle: str) -> str:
        names = [p.name for p in usable]
        request = AutoAssignRequest(
            handle_id=handle,
            hostname=self.nodename,
            num_ipv4=1 if version == 4 else 0,
            num_ipv6=1 if version == 6 else 0,
            attrs={"type": ATTRIBUTE_TYPE[version]},
            ipv4_pools=names if version == 4 else (),
            ipv6_pools=names if version == 6 else (),
            intended_use=USE_TUNNEL,
        )
        result = self.ipam.auto_assign(request)
        address = (result.ipv4 or result.ipv6)[0].split("/")[0]
        try:
            self._write(version, address)
        except BaseException:
            self.ipam.release_ips([address])
            raise
        return address

    def _valid(self, address: str, usable: list[IPPool], handle: str) -> bool:
        if pool_containing(usable, address) is None:
            return False
        allocation = self.ipam.allocation_of(address)
        return allocation is not None and allocation.handle_id == handle

    def _remove(self, version: int, current: str | None) -> None:
        if current:
            self._write(version, None)
            log.info("no VXLAN pool for IPv%d any more: released %s", version, current)
        self.ipam.release_by_handle(tunnel_handle(self.nodename, version))

    def _write(self, version: int, address: str | None) -> None:
        """Set (or with None clear) the Node's tunnel address and MAC of `version`."""

        def edit(node: Node) -> Node:
            mac = getattr(node.spec, _MAC_FIELD[version])
            if address is not None:
                mac = vtep_mac(self.nodename, version, mac)
            fields = {
                _ADDRESS_FIELD[version]: address,
                _MAC_FIELD[version]: mac if address else None,
            }
            spec = node.spec.model_copy(update=fields).model_dump(exclude_none=True)
            return Node.model_validate({**node.to_dict(), "spec": spec})

        self.ipam.resources.update(Node, self.nodename, None, edit, attempts=_ATTEMPTS)


class TunnelKeeper:
    """Runs `TunnelAddresses.reconcile` at the first `check` and then only when one of its
    inputs changed, as watches report them: this Node, the IPPools, and the node's two tunnel
    handles (an address allocated to or released from them). Idle, it sends etcd nothing but
    its three watches (Node, pools, handles of the form `vxlan-*`): Syncers, which resume a
    broken watch and re-list after a compaction, reporting only what differs. `check` is
    called from the node's supervision loop, so a change is acted on within that loop's
    interval. A failed pass is retried with back-off; one failing because the Node is not
    registered waits for the Node to appear. Our own writes come back as changes: the pass
    they trigger finds everything in place and writes nothing."""

    def __init__(
        self, backend: Backend, tunnels: TunnelAddresses, retry: Backoff | None = None
    ) -> None:
        self._tunnels = tunnels
        self._retry = retry or Backoff(1.0, 30.0)
        self._retry_at = 0.0
        self._changed = threading.Event()
        self._changed.set()  # the first check reconciles
        node = tunnels.nodename
        node_key = ResourceKey(Node, node).path
        handles = [handle_key(tunnel_handle(node, v)) for v in (4, 6)]
        # A prefix watch on our Node or handle keys also covers names they prefix (host-1,
        # host-10): the keys are matched exactly here.
        self._keys = frozenset([node_key, *handles])
        self._pools = kind_prefix(IPPool)
        self._syncers = [
            Syncer(backend, [node_key], self, name="tunnels-node"),
            Syncer(backend, [self._pools], self, name="tunnels-pools"),
            Syncer(backend, handles, self, name="tunnels-handles"),
        ]

    def start(self) -> None:
        for syncer in self._syncers:
            syncer.start()

    def stop(self) -> None:
        for syncer in self._syncers:
            syncer.stop()

    def on_status(self, status: SyncStatus) -> None:
        """Nothing to do: a re-list after a failure reports what changed as updates."""

    def on_updates(self, updates: Sequence[Update]) -> None:
        if any(u.key in self._keys or u.key.startswith(self._pools) for u in updates):
            self._changed.set()

    def check(self) -> None:
        """Reconcile if something changed since the last pass (and no retry is pending).
        RuntimeError if a watch has stopped for good (the process should be restarted)."""
        for syncer in self._syncers:
            if syncer.failure is not None:
                raise RuntimeError(f"{syncer.name} stopped: {syncer.failure}")
        now = time.monotonic()
        if not self._changed.is_set() or now < self._retry_at:
            return
        self._changed.clear()  # a change during the pass is seen by the next check
        try:
            self._tunnels.reconcile()
        except ResourceNotFound as exc:
            log.error("no VXLAN tunnel addresses yet: %s (waiting for it)", exc)
        except (DatastoreError, IPAMError) as exc:
            self._changed.set()
            delay = self._retry.delay()
            self._retry_at = now + delay
            log.error(
                "reconciling the VXLAN tunnel addresses failed: %s; retry in %.1fs", exc, delay
            )
        else:
            self._retry.reset()
