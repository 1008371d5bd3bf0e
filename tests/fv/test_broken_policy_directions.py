"""A policy broken in etcd fails closed only in the directions it covers (real packets).

An Ingress-only policy with one rule calico-py refuses, written straight into etcd by another
tool, denies ingress to the endpoints it selects and leaves their egress to the rest of
policy (here the allow-all profile); a broken policy whose types cannot be read denies both.
"""

from __future__ import annotations

import json
import time

import pytest

from calico.felix.daemon import WATCHED_KINDS
from calico.model.felixconfig import FelixConfiguration
from calico.model.keys import ResourceKey
from calico.model.policy import GlobalNetworkPolicy
from calico.testing.garbage import FLAVOURS, LineCounter, garbage, write
from calico.testing.workloads import ping

from .conftest import Cluster, wait_until
from .tracing import traced

pytestmark = pytest.mark.fv


def put_raw(cluster: Cluster, name: str, spec: dict[str, object]) -> None:
    data = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }
    key = ResourceKey(GlobalNetworkPolicy, name).path
    cluster.backend.put(key, json.dumps(data).encode())


def test_broken_ingress_policy_denies_ingress_and_keeps_egress(cluster: Cluster) -> None:
    host = cluster.host("h1")
    a = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    b = host.add_workload("cali1b", "198.19.0.2", "2001:db8:100::2")
    cluster.add_endpoint(host, a, "a", app="web")
    cluster.add_endpoint(host, b, "b", app="client")
    host.start()
    host.wait_ready()
    for src, dst in ((a, b), (b, a)):
        wait_until(lambda s=src, d=dst: ping(cluster.ns, s.netns, d.ipv4), what="open")

    bad_rule = {"action": "Allow", "protocol": "QUIC"}
    put_raw(cluster, "web-in", {"selector": "app == 'web'", "types": ["Ingress"],
                                "ingress": [bad_rule]})  # fmt: skip
    wait_until(lambda: not ping(cluster.ns, b.netns, "198.19.0.1"), what="ingress denied")
    assert not ping(cluster.ns, b.netns, "2001:db8:100::1")
    # Egress is not the policy's business: a still reaches b, v4 and v6.
    assert ping(cluster.ns, a.netns, "198.19.0.2")
    assert ping(cluster.ns, a.netns, "2001:db8:100::2")
    lines = [ln for ln in host.log_since_start().splitlines() if "web-in" in ln]
    assert len(lines) == 1 and "deny-all (Ingress)" in lines[0], lines
    # The trace decodes the broken policy as Felix does.
    assert not traced(cluster, "198.19.0.2", "198.19.0.1", "icmp")
    assert not traced(cluster, "2001:db8:100::2", "2001:db8:100::1", "icmp")
    assert traced(cluster, "198.19.0.1", "198.19.0.2", "icmp")
    assert traced(cluster, "2001:db8:100::1", "2001:db8:100::2", "icmp")

    # Types that cannot be read: both directions fail closed.
    put_raw(cluster, "web-in", {"selector": "app == 'web'", "types": "Ingress",
                                "ingress": [bad_rule]})  # fmt: skip
    wait_until(lambda: not ping(cluster.ns, a.netns, "198.19.0.2"), what="egress denied")
    assert not ping(cluster.ns, b.netns, "198.19.0.1")
    assert not traced(cluster, "198.19.0.1", "198.19.0.2", "icmp")
    assert not traced(cluster, "198.19.0.2", "198.19.0.1", "icmp")


def test_felix_keeps_running_over_garbage_under_every_prefix(cluster: Cluster) -> None:
    host = cluster.host("h1")
    a = host.add_workload("cali1a", "198.19.0.1")
    b = host.add_workload("cali1b", "198.19.0.2")
    cluster.add_endpoint(host, a, "a")
    cluster.add_endpoint(host, b, "b")
    items = garbage()
    write(cluster.backend, items)
    # The configuration Felix itself reads, broken too.
    cluster.backend.put(ResourceKey(FelixConfiguration, "default").path, b"{not json")
    host.start()
    host.wait_ready()
    # The broken policies select all(): ingress fails closed, egress (no Egress type) does not.
    assert not ping(cluster.ns, a.netns, "198.19.0.2")
    assert not traced(cluster, "198.19.0.1", "198.19.0.2", "icmp")  # over the same garbage
    time.sleep(5)  # several refresh intervals: no line repeats
    assert host.proc is not None and host.proc.poll() is None, host.log_tail()
    counter = LineCounter(items)
    for line in host.log_since_start().splitlines():
        counter.count(line)
    reading = counter.reading("felix")
    assert reading.keys_reported == len(WATCHED_KINDS) * len(FLAVOURS), counter.lines
    assert reading.max_lines_per_key == 1, counter.lines
