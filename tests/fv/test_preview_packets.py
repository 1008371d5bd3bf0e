"""`calicoctl apply|delete --preview` agrees with the kernel: what it calls newly denied
(allowed) is allowed (denied) by real packets before the change and denied (allowed) after
it, and a pair it leaves out keeps its verdict. The outside is the host's upstream machine:
its address is, like the preview's external 192.0.2.1, inside no CIDR the datastore names,
so no rule can tell the two apart."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from calico import programs
from calico.testing.shop import DENY_DB
from calico.testing.workloads import connects, serve

from .conftest import Cluster, wait_until
from .test_host_endpoints import HOST_V4

pytestmark = pytest.mark.fv

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")


CLOSED = (
    "newly {}: external 192.0.2.1 → shop/db TCP 5432\n"
    "newly {}: external 192.0.2.1 → shop/db TCP 8080\n"
    "newly {}: shop/web → shop/db TCP 5432\n"
)


def calicoctl(cluster: Cluster, *args: str, stdin: str | None = None) -> tuple[int, str]:
    env = {"PATH": os.environ.get("PATH", ""), "ETCD_ENDPOINTS": cluster.etcd.endpoint}
    done = programs.run([CALICOCTL, *args], stdin=stdin, env=env, check=False)
    return done.returncode, done.stdout + done.stderr


def test_preview_matches_real_packets(cluster: Cluster) -> None:
    host = cluster.host("h1")
    web = host.add_workload("caliweb", "198.19.0.1")
    db = host.add_workload("calidb", "198.19.0.2")
    cluster.add_endpoint(host, web, "web", ns="shop", app="web")
    cluster.add_endpoint(host, db, "db", ns="shop", app="db")
    for port in (5432, 8080):
        serve(cluster.ns, db.netns, "198.19.0.2", port)
    cluster.ns.exec(host.upstream, ["ip", "route", "add", "198.19.0.0/16", "via", HOST_V4])
    host.start()
    host.wait_ready()

    def reach(netns: str, port: int) -> bool:
        return connects(cluster.ns, netns, "tcp", "198.19.0.2", port)

    every = [(web.netns, 5432), (web.netns, 8080), (host.upstream, 5432), (host.upstream, 8080)]
    wait_until(lambda: all(reach(*flow) for flow in every), what="all open")

    code, out = calicoctl(cluster, "apply", "--preview", "-f", "-", stdin=DENY_DB)
    assert (code, out) == (1, CLOSED.replace("{}", "denied"))
    assert all(reach(*flow) for flow in every)  # nothing was written
    assert calicoctl(cluster, "apply", "-f", "-", stdin=DENY_DB)[0] == 0
    closed = [(web.netns, 5432), (host.upstream, 5432), (host.upstream, 8080)]
    wait_until(lambda: not any(reach(*flow) for flow in closed), what="denied")
    assert reach(web.netns, 8080)  # not in the preview

    code, out = calicoctl(
        cluster, "delete", "--preview", "networkpolicy", "db-ingress", "-n", "shop"
    )
    assert (code, out) == (1, CLOSED.replace("{}", "allowed"))
    assert calicoctl(cluster, "delete", "networkpolicy", "db-ingress", "-n", "shop")[0] == 0
    wait_until(lambda: all(reach(*flow) for flow in every), what="allowed")
