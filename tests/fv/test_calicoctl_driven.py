"""The operator's path: manifests applied with the calicoctl binary drive Felix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from calico import programs
from calico.testing.workloads import connects, ping, serve

from .conftest import Cluster, wait_until
from .tracing import traced

pytestmark = pytest.mark.fv
CALICOCTL = str(Path(sys.executable).parent / "calicoctl")

MANIFEST = """
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {{name: kns.shop}}
spec:
  labelsToApply: {{pcns.projectcalico.org/name: shop}}
  ingress: [{{action: Allow}}]
  egress: [{{action: Allow}}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{namespace: shop, labels: {{app: web}}}}
spec: {{node: h1, orchestrator: k8s, pod: web, endpoint: eth0, interfaceName: caliweb,
        mac: "{web_mac}", ipNetworks: [198.19.0.10/32, "2001:db8:100::10/128"], profiles: [kns.shop]}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{namespace: shop, labels: {{app: client}}}}
spec: {{node: h1, orchestrator: k8s, pod: client, endpoint: eth0, interfaceName: caliclient,
        mac: "{client_mac}", ipNetworks: [198.19.0.11/32, "2001:db8:100::11/128"], profiles: [kns.shop]}}
"""

POLICY = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: shop}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == 'client'}
    destination: {ports: [80]}
"""


def calicoctl(cluster: Cluster, *args: str, stdin: str | None = None) -> str:
    env = {"ETCD_ENDPOINTS": cluster.etcd.unix_endpoint, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    proc = programs.run([CALICOCTL, *args], stdin=stdin, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_manifests_applied_with_calicoctl_are_enforced(cluster: Cluster) -> None:
    host = cluster.host("h1")
    web = host.add_workload("caliweb", "198.19.0.10", "2001:db8:100::10")
    client = host.add_workload("caliclient", "198.19.0.11", "2001:db8:100::11")
    serve(cluster.ns, web.netns, "198.19.0.10", 80)
    serve(cluster.ns, web.netns, "2001:db8:100::10", 80)
    manifest = MANIFEST.format(web_mac=web.mac, client_mac=client.mac)
    assert (
        calicoctl(cluster, "apply", "-f", "-", stdin=manifest)
        == "Successfully applied 3 resource(s)\n"
    )
    host.start()
    wait_until(lambda: ping(cluster.ns, client.netns, "198.19.0.10"), what="allow-all profile")
    calicoctl(cluster, "apply", "-f", "-", stdin=POLICY)
    wait_until(
        lambda: not ping(cluster.ns, client.netns, "2001:db8:100::10"), what="policy applied"
    )
    assert connects(cluster.ns, client.netns, "tcp", "198.19.0.10", 80)
    assert connects(cluster.ns, client.netns, "tcp", "2001:db8:100::10", 80)
    assert not connects(cluster.ns, client.netns, "udp", "198.19.0.10", 80)
    assert traced(cluster, "198.19.0.11", "198.19.0.10", "tcp", 80)
    assert traced(cluster, "2001:db8:100::11", "2001:db8:100::10", "tcp", 80)
    assert not traced(cluster, "198.19.0.11", "198.19.0.10", "udp", 80)
    assert not traced(cluster, "2001:db8:100::11", "2001:db8:100::10", "icmp")
    calicoctl(cluster, "delete", "networkpolicy", "web-ingress", "-n", "shop")
    wait_until(lambda: ping(cluster.ns, client.netns, "2001:db8:100::10"), what="policy removed")
    table = calicoctl(cluster, "get", "wep", "-n", "shop").splitlines()
    assert [line.split()[0] for line in table[1:]] == ["client", "web"]
