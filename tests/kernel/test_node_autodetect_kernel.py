"""IP autodetection inside a namespace with several interfaces: each of calico/node's methods
picks the address Calico would, over real netlink and a real route lookup (can-reach)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from calico.datastore.client import ResourceClient, ResourceNotFound
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.model import parse_resource
from calico.model.network import BGPPeer, Node, NodeBGPSpec
from calico.testing.etcd_server import EtcdServer
from calico.testing.netns import Namespaces
from calico.testing.waiting import wait_until

pytestmark = pytest.mark.kernel

# In interface-index order: eth0, eth1, then a workload interface first-found must skip.
ADDRESSES = {
    "eth0": ["198.18.10.2/24", "2001:db8:10::2/64"],
    "eth1": ["198.18.11.2/25", "198.18.11.3/25", "2001:db8:11::2/64"],
    "cali0123456789a": ["198.18.12.2/24", "2001:db8:12::2/64"],
}
DETECT = """
import sys
from calico.node.autodetect import AutodetectError, detect, host_addresses
from calico.node.config import NodeConfigError, parse_autodetection_method
version = int(sys.argv[2])
try:
    method = parse_autodetection_method("IP_AUTODETECTION_METHOD", sys.argv[1], version)
    print(detect(method, version, host_addresses))
except (AutodetectError, NodeConfigError) as exc:
    print(f"error: {exc}")
"""


@pytest.fixture
def host(netns: Namespaces) -> str:
    host, peer = netns.add("host"), netns.add("peer")
    for n, (ifname, cidrs) in enumerate(ADDRESSES.items()):
        netns.veth(host, ifname, peer, f"p{n}")
        for cidr in cidrs:
            netns.exec(host, ["ip", "addr", "add", cidr, "dev", ifname, "nodad"])
    netns.exec(host, ["ip", "route", "add", "default", "via", "198.18.10.1"])
    netns.exec(host, ["ip", "-6", "route", "add", "default", "via", "2001:db8:10::1"])
    return host


def detect(netns: Namespaces, host: str, method: str, version: int) -> str:
    argv = [sys.executable, "-c", DETECT, method, str(version)]
    return netns.exec(host, argv).stdout.strip()


@pytest.mark.parametrize(
    ("method", "version", "expected"),
    [
        ("first-found", 4, "198.18.11.2/25"),  # highest index first, cali* skipped
        ("first-found", 6, "2001:db8:11::2/64"),
        ("interface=eth0", 4, "198.18.10.2/24"),
        ("interface=eth0", 6, "2001:db8:10::2/64"),
        ("interface=^cali", 4, "198.18.12.2/24"),
        ("skip-interface=eth1", 4, "198.18.10.2/24"),
        ("skip-interface=eth1", 6, "2001:db8:10::2/64"),
        ("skip-interface=eth.*", 4, "error: no global IPv4 address on a matching interface"),
        ("cidr=198.18.10.0/24", 4, "198.18.10.2/24"),
        ("cidr=198.18.11.3/32", 4, "198.18.11.3/25"),
        ("cidr=2001:db8:10::/48", 6, "2001:db8:10::2/64"),
        ("can-reach=198.18.11.100", 4, "198.18.11.2/25"),  # the connected route on eth1
        ("can-reach=198.18.12.9", 4, "198.18.12.2/24"),  # any interface, even cali*
        ("can-reach=198.19.200.1", 4, "198.18.10.2/24"),  # the default route's
        ("can-reach=2001:db8:11::99", 6, "2001:db8:11::2/64"),
        ("can-reach=2001:db8:99::1", 6, "2001:db8:10::2/64"),
    ],
)
def test_each_method_picks_calicos_address(
    netns: Namespaces, host: str, method: str, version: int, expected: str
) -> None:
    assert detect(netns, host, method, version) == expected


def test_can_reach_without_a_route_fails(netns: Namespaces, host: str) -> None:
    netns.exec(host, ["ip", "route", "del", "default"])
    assert detect(netns, host, "can-reach=198.19.200.1", 4).startswith("error: no route to")


def test_calico_node_run_registers_the_detected_addresses(
    netns: Namespaces, host: str, tmp_path: Path
) -> None:
    """The issue's case: IP_AUTODETECTION_METHOD=interface=eth1 must give eth1's address
    (first-found would not pick it here), and can-reach= must reach the Node for IPv6; the
    router id and log level variables reach BIRD's config and the node's log, and a moved
    address reaches the Node within AUTODETECT_POLL_INTERVAL."""
    for tool in ("etcd", "bird"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (install etcd-server, bird2)")
    netns.exec(host, ["ip", "link", "add", "eth9", "type", "veth", "peer", "name", "eth9p"])
    netns.exec(host, ["ip", "addr", "add", "198.18.13.2/24", "dev", "eth9"])  # highest index
    with EtcdServer() as etcd:
        env = {
            **os.environ,
            "NODENAME": "autodetect-1",
            "IP": "autodetect",
            "IP_AUTODETECTION_METHOD": "interface=eth1",
            "IP6": "autodetect",
            "IP6_AUTODETECTION_METHOD": "can-reach=2001:db8:99::1",
            "CALICO_ROUTER_ID": "198.18.99.1",
            "CALICO_STARTUP_LOGLEVEL": "debug",
            "AUTODETECT_POLL_INTERVAL": "500ms",
            "ETCD_ENDPOINTS": etcd.unix_endpoint,
            "CALICO_RUN_DIR": str(tmp_path),
            "CALICO_SECRETS_DIR": str(tmp_path / "secrets"),
        }
        client = ResourceClient(EtcdBackend(EtcdConfig(endpoints=(etcd.endpoint,))))
        client.create(_password_peer())  # CALICO_SECRETS_DIR reaches the BGP agent
        secret = tmp_path / "secrets" / "bgp" / "border"
        secret.parent.mkdir(parents=True)
        secret.write_text("node-run-pw\n")
        secret.chmod(0o600)
        argv = [str(Path(sys.executable).parent / "calico"), "node", "run", "--felix", "/bin/true"]
        node = netns.popen(host, argv, env=env, log=str(tmp_path / "node.log"))
        try:
            wait_until(lambda: _node_bgp(client, "autodetect-1"), 30, "the Node's registration")
            bgp = _node_bgp(client, "autodetect-1")
            assert bgp is not None
            assert (bgp.ipv4Address, bgp.ipv6Address) == ("198.18.11.2/25", "2001:db8:10::2/64")
            bird_cfg = tmp_path / "bird.cfg"  # CALICO_ROUTER_ID reaches BIRD
            wait_until(lambda: bird_cfg.exists(), 30, "bird.cfg")
            assert "router id 198.18.99.1;" in bird_cfg.read_text()
            assert (
                '  password "node-run-pw";  # From its secret bgp/border.' in bird_cfg.read_text()
            )
            assert " DEBUG " in (tmp_path / "node.log").read_text()  # CALICO_STARTUP_LOGLEVEL
            # The address moves: the node notices within AUTODETECT_POLL_INTERVAL.
            netns.exec(host, ["ip", "addr", "flush", "dev", "eth1", "scope", "global"])
            netns.exec(host, ["ip", "addr", "add", "198.18.11.50/26", "dev", "eth1"])
            wait_until(
                lambda: (_node_bgp(client, "autodetect-1") or bgp).ipv4Address == "198.18.11.50/26",
                15,
                "the Node's new address",
            )
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=20)
            client.backend.close()


def _node_bgp(client: ResourceClient, name: str) -> NodeBGPSpec | None:
    try:
        return client.get(Node, name).spec.bgp
    except ResourceNotFound:
        return None


def _password_peer() -> BGPPeer:
    spec = {"peerIP": "198.18.99.254", "asNumber": 65000,
            "password": {"secretKeyRef": {"name": "bgp", "key": "border"}}}  # fmt: skip
    peer = parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer",
                           "metadata": {"name": "border"}, "spec": spec})  # fmt: skip
    assert isinstance(peer, BGPPeer)
    return peer
