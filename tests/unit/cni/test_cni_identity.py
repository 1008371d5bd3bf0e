"""Names derived from a CNI call: endpoint name, host veth, IPAM handles (as Calico derives them)."""

from __future__ import annotations

import hashlib

from calico.cni.identity import identify
from calico.cni.spec import Invocation

CID = "5f2c1e9a8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7"


def test_plain_cni_call() -> None:
    ident = identify(
        Invocation("ADD", CID, "/run/netns/x", "eth0", {"K8S_POD_NAME": "web"}), "host-1"
    )
    assert (ident.orchestrator, ident.namespace, ident.pod) == ("cni", "default", None)
    assert ident.host_veth == "cali5f2c1e9a8b7"  # cali + containerID[:11]
    assert ident.wep_name == f"host--1-cni-{CID}-eth0"
    assert ident.handle_id("net1") == f"net1.{CID}"
    assert ident.legacy_handle_id == CID
    assert ident.workload == CID


def test_kubernetes_style_call() -> None:
    args = {"K8S_POD_NAMESPACE": "shop", "K8S_POD_NAME": "cart-7d9", "IgnoreUnknown": "1"}
    ident = identify(Invocation("ADD", CID, "/run/netns/x", "eth0", args), "node1")
    assert (ident.orchestrator, ident.namespace, ident.pod) == ("k8s", "shop", "cart-7d9")
    # Calico's VethNameForWorkload: cali + sha1("<namespace>.<pod>")[:11]
    assert ident.host_veth == "cali" + hashlib.sha1(b"shop.cart-7d9").hexdigest()[:11]
    assert ident.host_veth == "cali6672f9163e3"
    assert ident.wep_name == "node1-k8s-cart--7d9-eth0"
    assert ident.handle_id("k8s-pod-network") == f"k8s-pod-network.{CID}"
    assert ident.legacy_handle_id == "shop.cart-7d9"


def test_short_container_id_and_other_interface() -> None:
    ident = identify(Invocation("ADD", "abc", "/n", "net1", {}), "n")
    assert ident.host_veth == "caliabc"
    assert ident.wep_name == "n-cni-abc-net1"
