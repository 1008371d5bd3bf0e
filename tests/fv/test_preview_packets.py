"""`calicoctl apply|delete --preview` agrees with the kernel: what it calls newly denied
(allowed) is allowed (denied) by real packets before the change and denied (allowed) after
it, and a pair it leaves out keeps its verdict."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from calico import programs
from calico.testing.workloads import connects, serve

from .conftest import Cluster, wait_until

pytestmark = pytest.mark.fv

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")
POLICY = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: shop}
spec:
  order: 10
  selector: app == 'db'
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'web'}, destination: {ports: [8080]}}
  - {action: Deny, protocol: TCP, destination: {ports: [5432]}}
"""


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
    host.start()
    host.wait_ready()
    wait_until(lambda: connects(cluster.ns, web.netns, "tcp", "198.19.0.2", 5432), what="open")
    assert connects(cluster.ns, web.netns, "tcp", "198.19.0.2", 8080)

    code, out = calicoctl(cluster, "apply", "--preview", "-f", "-", stdin=POLICY)
    assert (code, out) == (1, "newly denied: shop/web → shop/db TCP 5432\n")
    assert connects(cluster.ns, web.netns, "tcp", "198.19.0.2", 5432)  # nothing was written
    assert calicoctl(cluster, "apply", "-f", "-", stdin=POLICY)[0] == 0
    wait_until(
        lambda: not connects(cluster.ns, web.netns, "tcp", "198.19.0.2", 5432), what="denied"
    )
    assert connects(cluster.ns, web.netns, "tcp", "198.19.0.2", 8080)  # not in the preview

    code, out = calicoctl(
        cluster, "delete", "--preview", "networkpolicy", "db-ingress", "-n", "shop"
    )
    assert (code, out) == (1, "newly allowed: shop/web → shop/db TCP 5432\n")
    assert calicoctl(cluster, "delete", "networkpolicy", "db-ingress", "-n", "shop")[0] == 0
    wait_until(lambda: connects(cluster.ns, web.netns, "tcp", "198.19.0.2", 5432), what="allowed")
