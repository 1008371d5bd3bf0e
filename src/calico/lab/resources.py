"""The datastore side of a lab, as v3 resources an operator would apply (pure).

IP pools; BGPConfiguration `default` (cluster AS, node-to-node mesh); a Node per host carrying
its labels (route reflectors also `route-reflector: "true"` and their cluster ID) for
`calico node run` to complete; a BGPPeer from every node to the route reflectors; global
BGPPeers to the border router (on the bridged fabric); in an L3 fabric, a `rack` label per node
and a BGPPeer per rack from its nodes to its ToR (with the ToR's password as a secretKeyRef),
another to the ToR's IPv6 address (or loopback6) if the rack has IPv6; then the manifests the
lab file lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calico.lab.labfile import RACK_LABEL, pool_name, pool_spec
from calico.lab.spec import (
    LabSpec,
    Rack,
    gateway_address,
    gateway_address6,
    tor_peer_address,
    tor_peer_address6,
)
from calico.model import API_VERSION, parse_manifest, parse_resource
from calico.model.base import Resource

RR_LABEL = "route-reflector"


def _doc(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, **meta},
        "spec": spec,
    }


def tor_secret(rack: Rack) -> dict[str, str]:
    """The secretKeyRef of the rack's ToR password (each host holds the file)."""
    return {"name": f"lab-tor-{rack.name}", "key": "password"}


def lab_documents(spec: LabSpec) -> list[dict[str, Any]]:
    docs = []
    for i in range(len(spec.pools)):
        docs.append(_doc("IPPool", pool_name(spec, i), pool_spec(spec, i)))
    bgp: dict[str, Any] = {"asNumber": spec.asNumber, "nodeToNodeMeshEnabled": spec.node_mesh}
    docs.append(_doc("BGPConfiguration", "default", bgp))
    for host in spec.hosts:
        labels = dict(host.labels)
        node_spec: dict[str, Any] = {}
        if host.rack:
            labels[RACK_LABEL] = host.rack
        if host.routeReflector:
            labels[RR_LABEL] = "true"
            node_spec["bgp"] = {"routeReflectorClusterID": host.routeReflector}
        docs.append(_doc("Node", host.name, node_spec, labels=labels))
    if spec.route_reflectors:
        selectors = {"nodeSelector": "all()", "peerSelector": f"{RR_LABEL} == 'true'"}
        docs.append(_doc("BGPPeer", "lab-route-reflectors", selectors))
    for rack in spec.racks:
        if rack.tor is None:
            continue  # behind the plain router: nothing to peer with
        peer = {
            "nodeSelector": f"{RACK_LABEL} == '{rack.name}'",
            "peerIP": tor_peer_address(rack),
            "asNumber": rack.tor.asNumber,
        }
        if rack.tor.loopback is not None:  # not on the rack's subnet: a route via the ToR
            peer["reachableBy"] = gateway_address(rack)
        if rack.tor.password is not None:
            peer["password"] = {"secretKeyRef": tor_secret(rack)}
        docs.append(_doc("BGPPeer", f"lab-tor-{rack.name}", peer))
        address6 = tor_peer_address6(rack)
        if address6 is not None:  # IPv6: the ToR's loopback6 (reachable by its address) or that
            peer6 = {k: v for k, v in peer.items() if k != "reachableBy"}
            peer6["peerIP"] = address6
            if rack.tor.loopback6 is not None:
                peer6["reachableBy"] = gateway_address6(rack)
            docs.append(_doc("BGPPeer", f"lab-tor-{rack.name}-ipv6", peer6))
    border = spec.border
    if border is not None and not spec.racks:  # in the L3 fabric it peers with the spines
        for version, address in ((4, border.ipv4), (6, border.ipv6)):
            if address:
                peer = {"peerIP": address.split("/")[0], "asNumber": border.asNumber}
                docs.append(_doc("BGPPeer", f"lab-{border.name}-ipv{version}", peer))
    return docs


def lab_resources(spec: LabSpec) -> list[Resource]:
    """Everything to apply, in order (ResourceError names a bad manifest)."""
    resources = [parse_resource(doc) for doc in lab_documents(spec)]
    for path in spec.resources:
        full = Path(spec.base_dir) / path
        resources += parse_manifest(full.read_text(), str(full))
    return resources
