"""`calico node run` with CALICO_NETWORKING_BACKEND=vxlan in a test namespace, against a real
etcd: the Node is registered with its address, the default pool gets CALICO_IPV4POOL_VXLAN's
mode, the node takes a VXLAN tunnel address before Felix starts, and neither BIRD nor the BGP
agent runs. The node process lifts the model's vxlanMode refusal first (VXLAN is switched on
as a whole in calico.model.support; harmless once it is)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from calico.datastore.client import ResourceClient, ResourceNotFound
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.model.network import IPPool, Node, NodeSpec
from calico.model.vxlan import vtep_mac
from calico.testing.etcd_server import EtcdServer
from calico.testing.netns import Namespaces
from calico.testing.waiting import wait_until

pytestmark = pytest.mark.kernel


def test_vxlan_backend_runs_felix_alone_with_a_tunnel_address(
    netns: Namespaces, tmp_path: Path
) -> None:
    if shutil.which("etcd") is None:
        pytest.skip("etcd not found (install etcd-server)")
    host, peer = netns.add("vx"), netns.add("vxpeer")
    netns.veth(host, "eth0", peer, "p0")
    netns.exec(host, ["ip", "addr", "add", "198.18.20.2/24", "dev", "eth0"])
    log, felix_log = tmp_path / "node.log", tmp_path / "felix.log"
    with EtcdServer() as etcd:
        env = {**os.environ, "NODENAME": "vx-1", "CALICO_NETWORKING_BACKEND": "vxlan",
               "CALICO_IPV4POOL_CIDR": "198.19.0.0/16", "CALICO_IPV4POOL_VXLAN": "Always",
               "ETCD_ENDPOINTS": etcd.unix_endpoint, "CALICO_RUN_DIR": str(tmp_path),
               "FELIX_MTUFILEPATH": str(tmp_path / "mtu")}  # fmt: skip
        client = ResourceClient(EtcdBackend(EtcdConfig(endpoints=(etcd.endpoint,))))
        felix = str(Path(sys.executable).parent / "calico-felix")
        argv = [str(Path(sys.executable).parent / "calico"), "node", "run", "--felix", felix]
        node = netns.popen(host, argv, env=env, log=str(log))
        try:
            wait_until(lambda: "started felix" in log.read_text(), 30, "Felix's start")
            spec = _spec(client, "vx-1")  # the tunnel address came before Felix
            assert spec is not None and spec.bgp is not None
            assert spec.bgp.ipv4Address == "198.18.20.2/24"
            assert spec.ipv4VXLANTunnelAddr is not None
            tunnel = ipaddress.ip_address(spec.ipv4VXLANTunnelAddr)
            assert tunnel in ipaddress.ip_network("198.19.0.0/16")
            assert spec.vxlanTunnelMACAddr == vtep_mac("vx-1", 4)
            assert client.get(IPPool, "default-ipv4-ippool").spec.vxlanMode == "Always"
            # BIRD would start right after Felix, long before Felix has logged anything.
            wait_until(lambda: felix_log.read_text().strip(), 30, "Felix's first log line")
            assert "started bird" not in log.read_text()
            assert not (tmp_path / "bird.cfg").exists()  # no BGP agent either
            assert node.poll() is None
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=20)
            client.backend.close()
        assert node.returncode == 0, log.read_text()


def _spec(client: ResourceClient, name: str) -> NodeSpec | None:
    try:
        return client.get(Node, name).spec
    except ResourceNotFound:
        return None
