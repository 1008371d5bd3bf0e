"""A workload re-created with the interface name AND the address of the one before (a pod
re-created under its own name: same endpoint, same `cali` name, same IP handed back) inherits
none of its flows, whether Felix applies the deletion first ("slow") or sees the deletion and
the re-creation in one go ("quick": Felix is stopped meanwhile, SIGSTOP/SIGCONT, so its
event queues hold both).

The old workload A accepts a long-lived TCP connection from P; the new workload B denies P.
Were A's conntrack entry kept, the connection's next packet would be accepted as ESTABLISHED
before any policy, reach B, and be reset by B's kernel. Like Calico (which tracks a route's
owner by interface index), Felix treats a re-created interface as a new interface.
"""

from __future__ import annotations

import os
import re
import signal

import pytest

from calico.model.endpoints import WorkloadEndpoint
from calico.rules.naming import WORKLOAD_TO_PFX
from calico.testing.workloads import Workload, add_workload, connects, serve

from .conftest import Cluster, FelixHost, wait_until
from .test_conntrack_cleanup import ADDRS, PORT, connection, start, tcp_counters

pytestmark = pytest.mark.fv


def flow_tracked(host: FelixHost, v: int, src: str, sport: int) -> bool:
    """Whether the host tracks the TCP flow from src:sport."""
    out = host.exec(["conntrack", "-L", "-f", f"ipv{v}", "-p", "tcp", "-s", src]).stdout
    return re.search(rf"src={re.escape(src)} .*sport={sport} ", out) is not None


def deny_peer_to_b(cluster: Cluster, host: FelixHost, peer_netns: str, addr: str) -> Workload:
    """Policy for the coming workload B (denies the peer), and a workload C that B's policy
    allows; returns C once the peer reaches A at `addr`."""
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "b-ingress"},
        "spec": {"selector": "role == 'b'", "ingress": [
            {"action": "Deny", "source": {"selector": "role == 'peer'"}},
            {"action": "Allow"},
        ]},
    })  # fmt: skip
    c = host.add_workload("calic", ADDRS[4][2], ADDRS[6][2])
    cluster.add_endpoint(host, c, "c", role="c")
    wait_until(lambda: connects(cluster.ns, peer_netns, "tcp", addr, PORT), what="p -> a")
    return c


@pytest.mark.parametrize("pace", ["quick", "slow"])
@pytest.mark.parametrize("v", [4, 6])
def test_a_workload_recreated_on_the_same_interface_and_address_inherits_no_flow(
    cluster: Cluster, v: int, pace: str
) -> None:
    ns = cluster.ns
    p_addr, addr, _ = ADDRS[v]
    host, peer, a, wep_a = start(cluster)
    assert host.proc is not None
    c = deny_peer_to_b(cluster, host, peer.netns, addr)
    with connection(peer.netns, addr) as conn:
        assert conn.exchange("hello") == "reply hello"
        assert flow_tracked(host, v, p_addr, conn.port)

        if pace == "quick":
            os.killpg(host.proc.pid, signal.SIGSTOP)
        try:
            # A goes as a CNI DEL does it (veth, then endpoint) ...
            host.exec(["ip", "link", "del", a.host_iface])
            cluster.delete(WorkloadEndpoint, str(wep_a.metadata.name), "default")
            if pace == "slow":
                chain = WORKLOAD_TO_PFX + a.host_iface
                wait_until(lambda: not host.has_chain(chain), what="a's deletion applied")
                wait_until(lambda: not flow_tracked(host, v, p_addr, conn.port), what="flow gone")
            # ... and comes back as B: same pod, interface name and addresses, new labels.
            b = add_workload(ns, host.netns, a.host_iface, a.ipv4, a.ipv6, name=f"{pace}-b")
            cluster.add_endpoint(host, b, "a", role="b")
        finally:
            if pace == "quick":
                os.killpg(host.proc.pid, signal.SIGCONT)
        serve(ns, b.netns, addr, PORT)
        wait_until(lambda: connects(ns, c.netns, "tcp", addr, PORT), what="c -> b")
        assert not connects(ns, peer.netns, "tcp", addr, PORT)

        # A's entry is gone, and the connection's next packets (the data and its
        # retransmissions) reach nobody: B's kernel neither receives them nor resets them.
        kept = flow_tracked(host, v, p_addr, conn.port)
        before = tcp_counters(ns, b.netns)
        reply = conn.exchange("again", wait=3.0)
        reached = tcp_counters(ns, b.netns)["InSegs"] - before["InSegs"]
        assert (kept, reply, reached) == (False, "timeout", 0)


@pytest.mark.parametrize("v", [4, 6])
def test_an_interface_flap_keeps_its_flows(cluster: Cluster, v: int) -> None:
    """Down and up again: the kernel drops the interface's routes and Felix adds them back
    on the same interface (same index), so the workload's connections carry on."""
    ns = cluster.ns
    p_addr, addr, _ = ADDRS[v]
    host, peer, a, _ = start(cluster)
    wait_until(lambda: connects(ns, peer.netns, "tcp", addr, PORT), what="p -> a")
    with connection(peer.netns, addr) as conn:
        assert conn.exchange("hello") == "reply hello"
        route = f"{addr} dev {a.host_iface} "
        host.exec(["ip", "link", "set", a.host_iface, "down"])
        wait_until(lambda: route not in host.routes(v), what="route flushed")
        host.exec(["ip", "link", "set", a.host_iface, "up"])
        wait_until(lambda: route in host.routes(v), what="route back")
        assert flow_tracked(host, v, p_addr, conn.port)
        assert conn.exchange("again", wait=10.0) == "reply again"


def test_a_flow_tracked_again_while_its_address_had_no_route_is_not_inherited(
    cluster: Cluster,
) -> None:
    """Without the blackhole route of a local block, a packet of the old flow sent while the
    address has no route goes up the default route (IPv4 only here) and is tracked again;
    Felix cleans the address once more before routing it to B."""
    ns = cluster.ns
    p_addr, addr, _ = ADDRS[4]
    host, peer, a, wep_a = start(cluster)
    host.exec(["ip", "-4", "route", "del", "blackhole", "198.19.0.0/24"])
    c = deny_peer_to_b(cluster, host, peer.netns, addr)
    with connection(peer.netns, addr) as conn:
        assert conn.exchange("hello") == "reply hello"
        host.exec(["ip", "link", "del", a.host_iface])
        cluster.delete(WorkloadEndpoint, str(wep_a.metadata.name), "default")
        cleaned = f"conntrack entries of {addr}\n"  # also a late delayed ACK may be back
        wait_until(lambda: cleaned in host.log_since_start(), what="a's flows deleted")
        assert conn.exchange("late", wait=1.0) == "timeout"
        assert flow_tracked(host, 4, p_addr, conn.port)  # tracked again, on its way upstream

        b = add_workload(ns, host.netns, a.host_iface, a.ipv4, a.ipv6, name="late-b")
        cluster.add_endpoint(host, b, "a", role="b")
        serve(ns, b.netns, addr, PORT)
        wait_until(lambda: connects(ns, c.netns, "tcp", addr, PORT), what="c -> b")
        kept = flow_tracked(host, 4, p_addr, conn.port)
        before = tcp_counters(ns, b.netns)
        reply = conn.exchange("again", wait=3.0)
        reached = tcp_counters(ns, b.netns)["InSegs"] - before["InSegs"]
        assert (kept, reply, reached) == (False, "timeout", 0)
