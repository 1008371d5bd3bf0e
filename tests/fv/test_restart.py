"""Felix restarts (kill -9) without dropping a packet, without rewriting an unchanged
dataplane, and applies what changed in the datastore while it was down."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from calico.calc.messages import PolicyID
from calico.model.endpoints import WorkloadEndpoint
from calico.model.policy import GlobalNetworkPolicy
from calico.rules import naming
from calico.testing.workloads import connects, ping, serve

from .conftest import Cluster, FelixHost, wait_until
from .probes import Prober, Stream, echo_server

pytestmark = pytest.mark.fv

_COUNTED = re.compile(r"^\[(\d+):(\d+)\] (-A (\S+) .*)$")


def chain_bytes(host: FelixHost, version: int) -> dict[str, int]:
    """Bytes counted by every rule of every cali chain (summed per chain)."""
    totals: dict[str, int] = {}
    for line in host.iptables_save("filter", version, counters=True).splitlines():
        found = _COUNTED.match(line)
        if found and found.group(4).startswith("cali-"):
            chain = found.group(4)
            totals[chain] = totals.get(chain, 0) + int(found.group(2))
    return totals


def kernel_state(host: FelixHost) -> dict[str, object]:
    return {
        **{f"{t}/v{v}": host.cali_lines(t, v) for t in ("raw", "mangle", "filter") for v in (4, 6)},
        "routes4": host.routes(4),
        "routes6": host.routes(6),
        "ipsets": sorted(host.exec(["ipset", "save"]).stdout.splitlines()),
    }


def test_restart_keeps_connectivity_and_applies_offline_changes(
    cluster: Cluster, tmp_path: Path
) -> None:
    host = cluster.host("h1")
    a = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    b = host.add_workload("cali1b", "198.19.0.2", "2001:db8:100::2")
    c = host.add_workload("cali1c", "198.19.0.3", "2001:db8:100::3")
    cluster.add_endpoint(host, a, "a", role="client")
    cluster.add_endpoint(host, b, "b", role="server")
    wep_c = cluster.add_endpoint(host, c, "c", role="other")
    # b accepts only what the probes use, from clients; that puts IP sets in play too.
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "server"},
        "spec": {"selector": "role == 'server'", "ingress": [
            {"action": "Allow", "protocol": "TCP", "source": {"selector": "role == 'client'"},
             "destination": {"ports": [7000, 8080]}},
            {"action": "Allow", "protocol": "ICMP", "source": {"selector": "role == 'client'"}},
            {"action": "Allow", "protocol": "UDP", "destination": {"ports": [9000]}},
        ]},
    })  # fmt: skip
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "other"},
        "spec": {"selector": "role == 'other'", "ingress": [
            {"action": "Allow", "source": {"selector": "role in {'client', 'admin'}"}},
        ]},
    })  # fmt: skip
    echo_server(cluster.ns, b.netns, "198.19.0.2", 7000)
    serve(cluster.ns, b.netns, "198.19.0.2", 8080)
    serve(cluster.ns, b.netns, "198.19.0.2", 9000)
    host.start()
    host.wait_ready()
    wait_until(lambda: connects(cluster.ns, a.netns, "tcp", "198.19.0.2", 8080), what="a->b")
    assert ping(cluster.ns, a.netns, "198.19.0.3")
    assert connects(cluster.ns, a.netns, "udp", "198.19.0.2", 9000)

    stream = Stream(cluster.ns, a.netns, "198.19.0.2", 7000, tmp_path / "stream.json", 0.05)
    prober = Prober(cluster.ns, a.netns, "198.19.0.2", 8080, tmp_path / "probe.json", 0.1)
    stream.progress(10)
    prober.progress(3)

    # Push a lot of bytes through the chains, so a chain rewrite (which zeroes its counters)
    # could not hide behind the little traffic that flows during the restart.
    cluster.ns.exec(a.netns, ["ping", "-q", "-c", "200", "-i", "0.002", "-s", "1400", "198.19.0.2"])
    before_bytes = {v: chain_bytes(host, v) for v in (4, 6)}
    assert before_bytes[4]["cali-fw-cali1a"] > 200 * 1400  # established: accepted there
    before = kernel_state(host)
    other_chain = naming.policy_chain_name(PolicyID("default", "other"), inbound=True)
    assert host.has_chain(other_chain)
    ipsets_before = set(host.exec(["ipset", "list", "-n"]).stdout.split())

    # 1. kill -9 and restart with nothing changed: nothing is dropped, nothing rewritten.
    host.kill()
    stream.progress(20)  # ~1 s of the flow while no Felix runs
    prober.progress(5)
    host.start()
    host.wait_ready()
    stream.progress(20)
    prober.progress(5)
    assert kernel_state(host) == before
    for version in (4, 6):
        after_bytes = chain_bytes(host, version)
        reset = {
            chain: (n, after_bytes.get(chain))
            for chain, n in before_bytes[version].items()
            if after_bytes.get(chain, 0) < n
        }
        assert not reset, f"IPv{version} chains rewritten (counters went back): {reset}"

    # 2. Changes while Felix is down: c's endpoint deleted, UDP to b denied by a new policy.
    host.kill()
    cluster.delete(WorkloadEndpoint, wep_c.name, "default")
    cluster.delete(GlobalNetworkPolicy, "other")
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "no-udp"},
        "spec": {"order": 10, "selector": "role == 'server'", "ingress": [
            {"action": "Deny", "protocol": "UDP"},
        ]},
    })  # fmt: skip
    prober.progress(5)
    assert connects(cluster.ns, a.netns, "udp", "198.19.0.2", 9000)  # the kernel is unchanged
    host.start()
    host.wait_ready()
    assert not host.has_chain("cali-tw-cali1c") and not host.has_chain("cali-fw-cali1c")
    assert not host.has_chain("cali-tw-cali1c", version=6)
    assert "198.19.0.3" not in host.routes(4)
    assert "2001:db8:100::3" not in host.routes(6)
    assert not connects(cluster.ns, a.netns, "udp", "198.19.0.2", 9000)
    assert not host.has_chain(other_chain) and not host.has_chain(other_chain, version=6)
    ipsets_after = set(host.exec(["ipset", "list", "-n"]).stdout.split())
    assert len(ipsets_after - ipsets_before) == 0 and len(ipsets_before - ipsets_after) == 2, (
        ipsets_before,
        ipsets_after,
    )  # the IPv4 and IPv6 sets of the deleted policy's selector are gone
    assert not ping(cluster.ns, a.netns, "198.19.0.3")
    stream.progress(20)
    prober.progress(5)

    # 3. A graceful stop (SIGTERM) exits promptly and leaves the dataplane as it is.
    assert host.proc is not None
    state = kernel_state(host)
    started = time.monotonic()
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(timeout=15) == 0, host.log_tail()
    assert time.monotonic() - started < 5
    assert kernel_state(host) == state
    stream.progress(10)

    flow, probes = stream.read(), prober.read()
    assert flow["fail"] == 0 and flow["reconnects"] == 1, flow
    assert flow["max_gap"] < 0.5, flow
    assert probes["tcp_fail"] == 0 and probes["icmp_fail"] == 0, probes
