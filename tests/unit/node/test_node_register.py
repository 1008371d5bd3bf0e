"""Node registration against an in-memory datastore: merge, keep, refuse conflicts."""

from __future__ import annotations

import pytest

from calico.datastore.client import ResourceClient
from calico.datastore.memory import MemoryBackend
from calico.model.base import ObjectMeta
from calico.model.network import ClusterInformation, IPPool, Node, NodeBGPSpec, NodeSpec
from calico.node.autodetect import InterfaceAddress
from calico.node.config import settings_from_env
from calico.node.register import (
    NodeStartupError,
    ensure_default_pools,
    merge_cluster_types,
    register_node,
)

ETH0 = [InterfaceAddress("eth0", 2, "198.18.0.11/24"),
        InterfaceAddress("eth0", 2, "2001:db8::11/64")]  # fmt: skip


def client() -> ResourceClient:
    c = ResourceClient(MemoryBackend())
    c.ensure_initialized()
    return c


def register(c: ResourceClient, **env: str) -> Node:
    return register_node(c, settings_from_env({"NODENAME": "host-1", **env}), lambda: ETH0)


def test_new_node_gets_autodetected_ipv4_only_by_default() -> None:
    node = register(client())
    assert node.spec.bgp == NodeBGPSpec(ipv4Address="198.18.0.11/24")


def test_existing_node_keeps_labels_cluster_id_and_saved_addresses() -> None:
    c = client()
    c.create(Node(metadata=ObjectMeta(name="host-1", labels={"rack": "a"}),
                  spec=NodeSpec(bgp=NodeBGPSpec(routeReflectorClusterID="224.0.0.1",
                                                ipv6Address="2001:db8::99/64", asNumber=65001))))  # fmt: skip
    node = register(c, IP="autodetect")
    assert node.metadata.labels == {"rack": "a"}
    assert node.spec.bgp is not None
    assert node.spec.bgp.routeReflectorClusterID == "224.0.0.1"
    assert node.spec.bgp.ipv6Address == "2001:db8::99/64"  # IP6 unset: kept
    assert node.spec.bgp.asNumber == 65001  # AS unset: kept
    node = register(c, IP6="none", AS="64512")
    assert node.spec.bgp is not None
    assert (node.spec.bgp.ipv6Address, node.spec.bgp.asNumber) == (None, 64512)
    assert node.spec.bgp.ipv4Address == "198.18.0.11/24"  # IP unset: the saved one


def test_address_used_by_another_node_is_refused() -> None:
    c = client()
    register_node(c, settings_from_env({"NODENAME": "other", "IP": "198.18.0.11/24"}), list)
    with pytest.raises(NodeStartupError, match="'other' is already using the address"):
        register(c)


def test_autodetection_failure_is_reported() -> None:
    with pytest.raises(NodeStartupError, match="IP6: autodetection failed: no global IPv6"):
        register_node(client(), settings_from_env({"NODENAME": "h", "IP6": "autodetect"}),
                      lambda: ETH0[:1])  # fmt: skip


def test_default_pools_only_when_asked_and_none_exists() -> None:
    c = client()
    ensure_default_pools(c, settings_from_env({"NODENAME": "h"}))
    assert c.list(IPPool).items == []
    env = {"NODENAME": "h", "CALICO_IPV4POOL_CIDR": "198.19.0.0/16"}
    ensure_default_pools(c, settings_from_env(env))
    ensure_default_pools(c, settings_from_env({**env, "CALICO_IPV4POOL_CIDR": "198.19.0.0/20"}))
    pools = c.list(IPPool).items
    assert [(p.name, p.spec.cidr) for p in pools if isinstance(p, IPPool)] == [
        ("default-ipv4-ippool", "198.19.0.0/16")
    ]


def test_default_pools_with_vxlan_mode() -> None:
    c = client()
    env = {"NODENAME": "h", "CALICO_IPV4POOL_CIDR": "198.19.0.0/16",
           "CALICO_IPV4POOL_VXLAN": "CrossSubnet", "CALICO_IPV6POOL_CIDR": "2001:db8:1::/64",
           "CALICO_IPV6POOL_VXLAN": "Always"}  # fmt: skip
    ensure_default_pools(c, settings_from_env(env))
    modes = {p.name: p.spec.vxlanMode for p in c.list(IPPool).items if isinstance(p, IPPool)}
    assert modes == {"default-ipv4-ippool": "CrossSubnet", "default-ipv6-ippool": "Always"}


def test_methods_explicit_prefix_and_failed_detection_keeping_the_saved_address() -> None:
    c = client()
    eth1 = [*ETH0, InterfaceAddress("eth1", 3, "198.18.1.11/25")]
    env = {"NODENAME": "host-1", "IP_AUTODETECTION_METHOD": "interface=eth0"}
    node = register_node(c, settings_from_env(env), lambda: eth1)
    assert node.spec.bgp is not None and node.spec.bgp.ipv4Address == "198.18.0.11/24"
    env["IP_AUTODETECTION_METHOD"] = "interface=eth9"  # finds nothing: keep the saved one
    node = register_node(c, settings_from_env({**env, "IP": "autodetect"}), lambda: eth1)
    assert node.spec.bgp is not None and node.spec.bgp.ipv4Address == "198.18.0.11/24"
    env = {"NODENAME": "host-1", "IP": "198.18.1.11"}  # no prefix: the interface's
    node = register_node(c, settings_from_env(env), lambda: eth1)
    assert node.spec.bgp is not None and node.spec.bgp.ipv4Address == "198.18.1.11/25"
    env = {
        "NODENAME": "host-1",
        "IP": "autodetect",
        "IP_AUTODETECTION_METHOD": "can-reach=198.18.1.1",
    }
    node = register_node(c, settings_from_env(env), lambda: eth1, reach=lambda d, v: "198.18.1.11")
    assert node.spec.bgp is not None and node.spec.bgp.ipv4Address == "198.18.1.11/25"


def test_node_ref_ip_check_cluster_type_and_pool_fields() -> None:
    c = client()
    register_node(c, settings_from_env({"NODENAME": "other", "IP": "198.18.0.11/24"}), list)
    env = {"NODENAME": "host-1", "DISABLE_NODE_IP_CHECK": "true", "CALICO_K8S_NODE_REF": "w1",
           "CLUSTER_TYPE": "k8s,bgp", "CALICO_IPV4POOL_CIDR": "198.19.0.0/16",
           "CALICO_IPV4POOL_BLOCK_SIZE": "28", "CALICO_IPV4POOL_NODE_SELECTOR": "rack == 'a'"}  # fmt: skip
    settings = settings_from_env(env)
    node = register_node(c, settings, lambda: ETH0)  # the shared address is not refused
    assert node.spec.orchRefs is not None
    assert [(r.nodeName, r.orchestrator) for r in node.spec.orchRefs] == [("w1", "k8s")]
    merge_cluster_types(c, settings.cluster_types)
    merge_cluster_types(c, ("bgp", "kdd"))
    assert c.get(ClusterInformation, "default").spec.clusterType == "calico-py,k8s,bgp,kdd"
    ensure_default_pools(c, settings)
    pool = c.get(IPPool, "default-ipv4-ippool")
    assert (pool.spec.blockSize, pool.spec.natOutgoing, pool.spec.nodeSelector) == (
        28,
        True,
        "rack == 'a'",
    )


def test_policy_only_leaves_the_addresses_alone() -> None:
    c = client()
    register(c, IP="198.18.0.11/24")
    env = {
        "NODENAME": "host-1",
        "CALICO_NETWORKING_BACKEND": "none",
        "IP": "autodetect",
        "AS": "65001",
    }
    node = register_node(c, settings_from_env(env), list)  # nothing to detect: not needed
    assert node.spec.bgp == NodeBGPSpec(ipv4Address="198.18.0.11/24", asNumber=65001)
    fresh = register_node(c, settings_from_env({**env, "NODENAME": "host-2"}), list)
    assert fresh.spec.bgp == NodeBGPSpec(asNumber=65001)


def test_the_address_monitor_updates_only_addresses() -> None:
    c = client()
    env = {"NODENAME": "host-1", "AS": "65001", "CALICO_K8S_NODE_REF": "w1", "IP": "autodetect"}
    register_node(c, settings_from_env(env), lambda: ETH0)
    node = c.get(Node, "host-1")
    assert node.spec.bgp is not None
    node.spec.bgp.asNumber = 65002  # an operator's change, kept until the node restarts
    c.replace(node)
    moved = [InterfaceAddress("eth0", 2, "198.18.0.12/24")]
    node = register_node(c, settings_from_env(env), lambda: moved, addresses_only=True)
    assert node.spec.bgp == NodeBGPSpec(ipv4Address="198.18.0.12/24", asNumber=65002)
