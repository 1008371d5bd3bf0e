"""The support classification: complete, in step with docs/support.md, and enforced.

Refused values are errors naming the resource and field; values that ask for nothing
(absent, empty, upstream's default or an explicit off) are accepted, so upstream manifests
still apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from calico.model import ResourceError, parse_resource
from calico.model.felix_fields import FELIX_FIELDS, REMOVED_FELIX_FIELDS
from calico.model.support import FELIX, FIELDS, Status, render, walk

DOCS = Path(__file__).resolve().parents[3] / "docs" / "support.md"


def test_every_field_of_every_kind_is_classified() -> None:
    missing = [f"{row.kind}: {row.path}" for row in walk() if row.support is None]
    assert missing == [], "classify these in calico.model.support: " + ", ".join(missing)


def test_no_classification_for_a_field_that_does_not_exist() -> None:
    seen = {(row.kind, row.path.rsplit(".", 1)[-1]) for row in walk()}
    names = {name for _, name in seen}
    stale = [f"{cls}.{f}" for cls, fields in FIELDS.items() for f in fields if f not in names]
    assert stale == []


def test_docs_support_md_is_generated_from_the_classification() -> None:
    assert DOCS.read_text() == render(), (
        "docs/support.md is stale: python -m calico.model.support > docs/support.md"
    )


def test_refused_entries_say_why() -> None:
    for row in walk():
        support = row.support
        assert support is not None
        if support.status is not Status.SUPPORTED:
            assert support.reason, f"{row.kind} {row.path} needs a reason"


def test_every_felix_field_is_classified() -> None:
    assert set(FELIX) == set(FELIX_FIELDS) | set(REMOVED_FELIX_FIELDS)


def doc(kind: str, spec: dict[str, Any], name: str = "r1", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": {"name": name, **meta},
        "spec": spec,
    }


def rule(**fields: Any) -> dict[str, Any]:
    return {"action": "Allow", **fields}


POOL = {"cidr": "198.18.0.0/16"}
PEER = {"peerIP": "198.18.0.254", "asNumber": 65000}
WEP = {
    "node": "h1",
    "orchestrator": "cni",
    "containerID": "c1",
    "endpoint": "eth0",
    "interfaceName": "cali1",
    "ipNetworks": ["198.18.0.5/32"],
}
WEP_NAME = "h1-cni-c1-eth0"

# (case, document, error path, text the error contains)
REFUSALS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "pool ipip",
        doc("IPPool", {**POOL, "ipipMode": "Always"}, "p1"),
        "spec.ipipMode",
        'IPPool "p1": spec.ipipMode: "Always" is not supported by calico-py (IPIP is not'
        " implemented); use ipipMode: Never (vxlanMode gives an overlay)",
    ),
    ("pool ipip cross", doc("IPPool", {**POOL, "ipipMode": "CrossSubnet"}), "spec.ipipMode", ""),
    (
        "pool LoadBalancer use",
        doc("IPPool", {**POOL, "allowedUses": ["LoadBalancer"]}),
        "spec.allowedUses",
        '"LoadBalancer" is not supported',
    ),
    (
        "pool namespaceSelector",
        doc("IPPool", {**POOL, "namespaceSelector": "all()"}),
        "spec.namespaceSelector",
        "ipam.ipv4_pools",
    ),
    (
        "felix wireguard",
        doc("FelixConfiguration", {"wireguardEnabled": True}, "default"),
        "spec.wireguardEnabled",
        'FelixConfiguration "default": spec.wireguardEnabled: true is not supported by'
        " calico-py (WireGuard is not implemented)",
    ),
    (
        "felix bpf",
        doc("FelixConfiguration", {"bpfEnabled": True}, "default"),
        "spec.bpfEnabled",
        "eBPF",
    ),
    (
        "felix bpf knob",
        doc("FelixConfiguration", {"bpfMapSizeRoute": 5}, "default"),
        "spec.bpfMapSizeRoute",
        "eBPF",
    ),
    (
        "felix ipip mtu",
        doc("FelixConfiguration", {"ipipMTU": 1400}, "default"),
        "spec.ipipMTU",
        "IPIP",
    ),
    (
        "felix flow logs",
        doc("FelixConfiguration", {"flowLogsGoldmaneServer": "g:7443"}, "default"),
        "spec.flowLogsGoldmaneServer",
        "flow logs",
    ),
    (
        "felix nftables",
        doc("FelixConfiguration", {"nftablesMode": "Enabled"}, "default"),
        "spec.nftablesMode",
        "iptablesBackend: NFT",
    ),
    (
        "rule http",
        doc("GlobalNetworkPolicy", {"ingress": [rule(protocol="TCP", http={"methods": ["GET"]})]}),
        "spec.ingress[0].http",
        "L7 proxy",
    ),
    (
        "rule services",
        doc(
            "NetworkPolicy",
            {"egress": [{"action": "Deny", "destination": {"services": {"name": "db"}}}]},
        ),
        "spec.egress[0].destination.services",
        "never match",
    ),
    (
        "profile rule http",
        doc("Profile", {"ingress": [rule(http={"paths": [{"prefix": "/"}]})]}),
        "spec.ingress[0].http",
        "",
    ),
    (
        "workload qos",
        doc("WorkloadEndpoint", {**WEP, "qosControls": {"egressBandwidth": 1000000}}, WEP_NAME),
        "spec.qosControls",
        "Felix does not shape",
    ),
    (
        "workload host port",
        doc(
            "WorkloadEndpoint",
            {**WEP, "ports": [{"name": "w", "protocol": "TCP", "port": 80, "hostPort": 8080}]},
            WEP_NAME,
        ),
        "spec.ports[0].hostPort",
        "host port",
    ),
    (
        "bgp peer optional password",
        doc(
            "BGPPeer",
            {**PEER, "password": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}},
        ),
        "spec.password.secretKeyRef.optional",
        "fail closed",
    ),
    (
        "bgp mesh optional password",
        doc(
            "BGPConfiguration",
            {"nodeMeshPassword": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}},
            "default",
        ),
        "spec.nodeMeshPassword.secretKeyRef.optional",
        "fail closed",
    ),
    ("bgp peer filters", doc("BGPPeer", {**PEER, "filters": ["f"]}), "spec.filters", "BGPFilter"),
    (
        "bgp peer bfd",
        doc("BGPPeer", {**PEER, "failureDetectionMode": "BFDIfDirectlyConnected"}),
        "spec.failureDetectionMode",
        "BFD",
    ),
    (
        "bgp service cluster IPs",
        doc("BGPConfiguration", {"serviceClusterIPs": [{"cidr": "198.19.0.0/16"}]}, "default"),
        "spec.serviceClusterIPs",
        "Kubernetes service",
    ),
    (
        "bgp programClusterRoutes disabled",
        doc("BGPConfiguration", {"programClusterRoutes": "Disabled"}, "default"),
        "spec.programClusterRoutes",
        "BIRD must",
    ),
    (
        "ipam kubevirt",
        doc("IPAMConfiguration", {"kubeVirtVMAddressPersistence": "Enabled"}, "default"),
        "spec.kubeVirtVMAddressPersistence",
        "KubeVirt",
    ),
]


@pytest.mark.parametrize(
    ("data", "path", "text"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_refused_values_name_resource_field_and_reason(
    data: dict[str, Any], path: str, text: str
) -> None:
    with pytest.raises(ResourceError) as info:
        parse_resource(data)
    message = str(info.value)
    assert f": {path}: " in message
    assert "is not supported by calico-py" in message
    assert text in message


# (case, document): values that ask for nothing, as upstream manifests carry them.
ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("pool modes never", doc("IPPool", {**POOL, "ipipMode": "Never", "vxlanMode": "Never"})),
    ("pool default uses", doc("IPPool", {**POOL, "allowedUses": ["Workload", "Tunnel"]})),
    (
        "felix explicit offs and defaults",
        doc(
            "FelixConfiguration",
            {
                "wireguardEnabled": False,
                "bpfEnabled": False,
                "bpfLogLevel": "",
                "bpfConnectTimeLoadBalancing": "TCP",
                "bpfHostNetworkedNATWithoutCTLB": "Enabled",
                "vxlanVNI": 4096,
                "vxlanPort": 4789,
                "floatingIPs": "Disabled",
                "nftablesMode": "Auto",
                "flowLogsFlushInterval": "5m",
                "logFilePath": "none",
                "healthPort": 9099,
                "reportingInterval": "0s",
                "ipipEnabled": False,
                "wireguardKeepAlive": "0s",
            },
            "default",
        ),
    ),
    (
        "felix case-insensitive default",
        doc("FelixConfiguration", {"bpfLogLevel": "off"}, "default"),
    ),
    ("rule empty http", doc("GlobalNetworkPolicy", {"ingress": [rule(http={})]})),
    ("workload empty qos", doc("WorkloadEndpoint", {**WEP, "qosControls": {}}, WEP_NAME)),
    (
        "bgp peer password",
        doc(
            "BGPPeer",
            {**PEER, "password": {"secretKeyRef": {"name": "s", "key": "k", "optional": False}}},
        ),
    ),
    (
        "bgp peer defaults",
        doc(
            "BGPPeer",
            {
                **PEER,
                "restartMode": "GracefulRestart",
                "filters": [],
                "failureDetectionMode": "None",
                "birdGatewayMode": "Recursive",
                "reversePeering": "Auto",
            },
        ),
    ),
    (
        "bgp config defaults",
        doc(
            "BGPConfiguration",
            {"ipv4NormalRoutePriority": 1024, "serviceClusterIPs": [], "nodeMeshPassword": {}},
            "default",
        ),
    ),
    (
        "ipam kubevirt off",
        doc("IPAMConfiguration", {"kubeVirtVMAddressPersistence": "Disabled"}, "default"),
    ),
    (
        "workload port without host port",
        doc(
            "WorkloadEndpoint",
            {**WEP, "ports": [{"name": "w", "protocol": "TCP", "port": 80, "hostPort": 0}]},
            WEP_NAME,
        ),
    ),
    (
        "kubernetes bookkeeping",
        doc("Tier", {}, "t1", ownerReferences=[{"kind": "X"}], finalizers=["f"], generation=3),
    ),
    ("rule annotations", doc("Profile", {"ingress": [rule(metadata={"annotations": {"a": "b"}})]})),
    (
        "bgp programClusterRoutes enabled",
        doc("BGPConfiguration", {"programClusterRoutes": "Enabled"}, "default"),
    ),
    ("node with upstream tunnel address", doc("Node", {"ipv4VXLANTunnelAddr": "198.18.9.1"}, "h1")),
]


@pytest.mark.parametrize("data", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_values_that_ask_for_nothing_are_accepted(data: dict[str, Any]) -> None:
    parse_resource(data)


@pytest.mark.parametrize(
    "field", sorted(f for f, s in FELIX.items() if s.status is Status.REFUSED and s.accepts)
)
def test_every_accepted_felix_value_is_valid_and_accepted(field: str) -> None:
    """The upstream defaults listed as asking for nothing pass the field's own schema too."""
    kind = {**FELIX_FIELDS, **REMOVED_FELIX_FIELDS}[field].kind
    for value in FELIX[field].accepts:
        value = [value] if kind.endswith("_list") else value  # lists are accepted item-wise
        parse_resource(doc("FelixConfiguration", {field: value}, "default"))


def test_readme_figures_match_the_classification() -> None:
    readme = " ".join((DOCS.parents[1] / "README.md").read_text().split())
    statuses = [s.status for s in FELIX.values()]
    refused, read = statuses.count(Status.REFUSED), statuses.count(Status.SUPPORTED)
    assert f"{refused} of FelixConfiguration's {len(FELIX)} fields" in readme
    assert f"Felix reads {read}." in readme
    assert f"{statuses.count(Status.NOOP)} FelixConfiguration fields are no-ops" in readme
