"""Resource validation: each bad manifest is refused with the field path and the reason."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from calico.model import ResourceError, parse_manifest, parse_resource
from calico.model.codec import load_documents


def res(kind: str, spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    meta.setdefault("name", "r1")
    doc: dict[str, Any] = {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta}
    if spec is not None:
        doc["spec"] = spec
    return doc


def rule(**fields: Any) -> dict[str, Any]:
    return {"action": "Allow", **fields}


def error_of(doc: dict[str, Any]) -> str:
    with pytest.raises(ResourceError) as info:
        parse_resource(doc)
    return str(info.value)


_PW_PEER = {"peerIP": "198.51.100.1", "asNumber": 64512}


def _pw(name: str, key: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": key}}


INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "port range backwards",
        res(
            "GlobalNetworkPolicy",
            {"ingress": [rule(protocol="TCP", destination={"ports": [80, "80:70"]})]},
            name="deny-db",
        ),
        'GlobalNetworkPolicy "deny-db": spec.ingress[0].destination.ports[1]: '
        '"80:70" is not a valid port range',
    ),
    (
        "port zero",
        res("GlobalNetworkPolicy", {"ingress": [rule(protocol="TCP", destination={"ports": [0]})]}),
        "ports[0]: 0 is not a valid port",
    ),
    (
        "port too big",
        res(
            "GlobalNetworkPolicy", {"ingress": [rule(protocol="UDP", source={"ports": ["70000"]})]}
        ),
        "source.ports[0]: 70000 is not a valid port",
    ),
    (
        "bad named port",
        res(
            "GlobalNetworkPolicy",
            {"ingress": [rule(protocol="TCP", destination={"ports": ["no spaces"]})]},
        ),
        "not a valid port, port range or port name",
    ),
    (
        "ports without protocol",
        res("GlobalNetworkPolicy", {"ingress": [rule(destination={"ports": [80]})]}),
        "spec.ingress[0].destination.ports: rules that specify ports must set protocol",
    ),
    (
        "ports with ICMP",
        res(
            "GlobalNetworkPolicy",
            {"egress": [rule(protocol="ICMP", destination={"notPorts": [80]})]},
        ),
        "spec.egress[0].destination.notPorts",
    ),
    (
        "unknown protocol",
        res("GlobalNetworkPolicy", {"ingress": [rule(protocol="QUIC")]}),
        'spec.ingress[0].protocol: "QUIC" is not a valid protocol',
    ),
    (
        "protocol number 0",
        res("GlobalNetworkPolicy", {"ingress": [rule(protocol=0)]}),
        "0 is not a valid protocol number",
    ),
    (
        "protocol 256",
        res("GlobalNetworkPolicy", {"ingress": [rule(protocol=256)]}),
        "256 is not a valid protocol number",
    ),
    (
        "bad action",
        res("GlobalNetworkPolicy", {"ingress": [{"action": "allow"}]}),
        'spec.ingress[0].action: "allow" is not one of',
    ),
    (
        "missing action",
        res("GlobalNetworkPolicy", {"ingress": [{"protocol": "TCP"}]}),
        "spec.ingress[0].action: required field is missing",
    ),
    (
        "icmp without icmp protocol",
        res("GlobalNetworkPolicy", {"ingress": [rule(protocol="TCP", icmp={"type": 8})]}),
        "spec.ingress[0].icmp: rules that specify ICMP fields",
    ),
    (
        "icmp code without type",
        res("GlobalNetworkPolicy", {"ingress": [rule(protocol="ICMP", icmp={"code": 0})]}),
        "spec.ingress[0].icmp.code: ICMP code specified without an ICMP type",
    ),
    (
        "icmp type out of range",
        res("GlobalNetworkPolicy", {"ingress": [rule(protocol="ICMP", icmp={"type": 255})]}),
        "spec.ingress[0].icmp.type",
    ),
    (
        "ICMP with ipVersion 6",
        res("GlobalNetworkPolicy", {"ingress": [rule(protocol="ICMP", ipVersion=6)]}),
        "spec.ingress[0].ipVersion: must be 4 with protocol ICMP",
    ),
    (
        "ICMPv6 with ipVersion 4",
        res("GlobalNetworkPolicy", {"ingress": [rule(protocol="ICMPv6", ipVersion=4)]}),
        "must be 6 with protocol ICMPv6",
    ),
    (
        "bad ipVersion",
        res("GlobalNetworkPolicy", {"ingress": [rule(ipVersion=5)]}),
        "spec.ingress[0].ipVersion",
    ),
    (
        "bad CIDR",
        res("GlobalNetworkPolicy", {"ingress": [rule(source={"nets": ["10.0.0.300/8"]})]}),
        "spec.ingress[0].source.nets[0]: '10.0.0.300/8' is not a valid IP address or CIDR",
    ),
    (
        "unmasked rule net",
        res("GlobalNetworkPolicy", {"ingress": [rule(source={"nets": ["10.0.0.1/8"]})]}),
        "host bits are set",
    ),
    (
        "mixed IP versions",
        res(
            "GlobalNetworkPolicy",
            {
                "ingress": [
                    rule(source={"nets": ["10.0.0.0/8"]}, destination={"nets": ["2001:db8::/32"]})
                ]
            },
        ),
        "rule contains both IPv4 and IPv6 CIDRs",
    ),
    (
        "ipVersion vs CIDR",
        res(
            "GlobalNetworkPolicy", {"ingress": [rule(ipVersion=6, source={"nets": ["10.0.0.0/8"]})]}
        ),
        "rule IP version doesn't match CIDR version",
    ),
    (
        "bad selector",
        res("GlobalNetworkPolicy", {"selector": "app == "}),
        "spec.selector: invalid selector",
    ),
    (
        "bad rule selector",
        res("NetworkPolicy", {"ingress": [rule(source={"selector": "has(x"})]}, namespace="ns1"),
        "spec.ingress[0].source.selector: invalid selector",
    ),
    (
        "global() as policy selector",
        res("GlobalNetworkPolicy", {"selector": "global()"}),
        "spec.selector: global() can only be used",
    ),
    (
        "global() combined",
        res(
            "GlobalNetworkPolicy",
            {"ingress": [rule(source={"namespaceSelector": "global() && a == 'b'"})]},
        ),
        "global() cannot be combined",
    ),
    (
        "unknown field",
        res("GlobalNetworkPolicy", {"selctor": "all()"}),
        "spec.selctor: unknown field",
    ),
    (
        "unknown rule field",
        res("GlobalNetworkPolicy", {"ingress": [rule(destination={"port": [80]})]}),
        "spec.ingress[0].destination.port: unknown field",
    ),
    (
        "wrong type order",
        res("GlobalNetworkPolicy", {"order": "first"}),
        'spec.order: expected a number, got "first"',
    ),
    (
        "wrong type bool",
        res("IPPool", {"cidr": "10.0.0.0/16", "natOutgoing": "true"}),
        'spec.natOutgoing: expected a boolean (true or false), got "true"',
    ),
    (
        "wrong type list",
        res("GlobalNetworkPolicy", {"ingress": {"action": "Allow"}}),
        "spec.ingress: expected a list",
    ),
    (
        "duplicate types",
        res("GlobalNetworkPolicy", {"types": ["Ingress", "Ingress"]}),
        "'Ingress' type specified more than once",
    ),
    ("bad type", res("GlobalNetworkPolicy", {"types": ["ingress"]}), "spec.types[0]"),
    (
        "bad name",
        res("GlobalNetworkPolicy", {}, name="Bad_Name"),
        "metadata.name: 'Bad_Name' is not a valid policy name",
    ),
    (
        "missing name",
        res("IPPool", {"cidr": "10.0.0.0/16"}, name=None),
        "metadata.name: required field is missing",
    ),
    (
        "policy in tier without prefix",
        res("GlobalNetworkPolicy", {"tier": "security"}, name="allow"),
        "must be named 'security.<name>'",
    ),
    (
        "tier prefix mismatch",
        res("GlobalNetworkPolicy", {"tier": "security"}, name="other.allow"),
        "must be named 'security.<name>'",
    ),
    (
        "prefix without tier",
        res("GlobalNetworkPolicy", {}, name="security.allow"),
        "has tier prefix 'security' but spec.tier is 'default'",
    ),
    ("tier name with dot", res("Tier", {"order": 10}, name="a.b"), "is not a valid tier name"),
    (
        "default tier order",
        res("Tier", {"order": 5}, name="default"),
        "spec.order: the default tier's order must be 1000000",
    ),
    (
        "preDNAT and doNotTrack",
        res("GlobalNetworkPolicy", {"preDNAT": True, "doNotTrack": True, "applyOnForward": True}),
        "preDNAT and doNotTrack cannot both be true",
    ),
    (
        "preDNAT without applyOnForward",
        res("GlobalNetworkPolicy", {"preDNAT": True}),
        "spec.applyOnForward: must be true",
    ),
    (
        "preDNAT egress",
        res("GlobalNetworkPolicy", {"preDNAT": True, "applyOnForward": True, "egress": [rule()]}),
        "a preDNAT policy cannot have egress rules",
    ),
    (
        "NP with GNP-only field",
        res("NetworkPolicy", {"doNotTrack": True}, namespace="a"),
        "spec.doNotTrack: unknown field",
    ),
    (
        "namespace on cluster kind",
        res("GlobalNetworkPolicy", {}, namespace="a"),
        "metadata.namespace: GlobalNetworkPolicy is not namespaced",
    ),
    ("bad label key", res("Profile", {}, labels={"bad key": "v"}), "metadata.labels"),
    ("bad label value", res("Profile", {}, labels={"k": "-v"}), "label value '-v' is not valid"),
    (
        "pool not masked",
        res("IPPool", {"cidr": "10.0.0.1/16"}),
        "spec.cidr: '10.0.0.1/16' is not strictly masked",
    ),
    ("pool link local", res("IPPool", {"cidr": "169.254.0.0/16"}), "overlaps the link-local range"),
    (
        "pool smaller than block",
        res("IPPool", {"cidr": "10.0.0.0/28"}),
        "smaller than its block size",
    ),
    (
        "pool block size",
        res("IPPool", {"cidr": "10.0.0.0/16", "blockSize": 33}),
        "spec.blockSize: must be between 20 and 32",
    ),
    (
        "pool mode",
        res("IPPool", {"cidr": "10.0.0.0/16", "vxlanMode": "sometimes"}),
        'spec.vxlanMode: "sometimes" is not one of',
    ),
    ("pool no cidr", res("IPPool", {}), "spec.cidr: required field is missing"),
    ("pool no spec", res("IPPool"), "spec: required field is missing"),
    (
        "wep multi-address net",
        res("WorkloadEndpoint", {"ipNetworks": ["10.0.0.0/24"]}, namespace="a"),
        "spec.ipNetworks[0]: '10.0.0.0/24' must be a single address",
    ),
    (
        "wep NAT outside",
        res(
            "WorkloadEndpoint",
            {
                "ipNetworks": ["10.0.0.1/32"],
                "ipNATs": [{"internalIP": "10.0.0.2", "externalIP": "198.51.100.1"}],
            },
            namespace="a",
        ),
        "spec.ipNATs[0].internalIP: NAT is not in the endpoint's ipNetworks",
    ),
    (
        "wep allowed IP outside",
        res(
            "WorkloadEndpoint",
            {"ipNetworks": ["10.0.0.1/32"], "allowedIps": ["10.0.0.2/32"]},
            namespace="a",
        ),
        "spec.allowedIps[0]: '10.0.0.2/32' is not one of the endpoint's ipNetworks",
    ),
    (
        "wep allowed IP a prefix",
        res(
            "WorkloadEndpoint",
            {"ipNetworks": ["10.0.0.1/32"], "allowedIps": ["10.0.0.0/24"]},
            namespace="a",
        ),
        "spec.allowedIps[0]: '10.0.0.0/24' is not one of the endpoint's ipNetworks",
    ),
    (
        "ipam cooldown",
        res("IPAMConfiguration", {"ipCooldownSeconds": 30}, name="default"),
        "spec.ipCooldownSeconds: 30 is not supported by calico-py",
    ),
    (
        "ipam cooldown range",
        res("IPAMConfiguration", {"ipCooldownSeconds": 1201}, name="default"),
        "spec.ipCooldownSeconds",
    ),
    (
        "felix flow table offload",
        res("FelixConfiguration", {"nftablesFlowTableOffload": "All"}, name="default"),
        'spec.nftablesFlowTableOffload: "All" is not supported by calico-py',
    ),
    (
        "node cluster ID",
        res(
            "Node",
            {"bgp": {"ipv4Address": "198.18.0.1/24", "routeReflectorClusterID": "2001:db8::1"}},
        ),
        "spec.bgp.routeReflectorClusterID: '2001:db8::1' is not IPv4",
    ),
    (
        "wep port name",
        res(
            "WorkloadEndpoint",
            {"ports": [{"name": "HTTP", "protocol": "TCP", "port": 80}]},
            namespace="a",
        ),
        "spec.ports[0].name: 'HTTP' is not a valid port name",
    ),
    (
        "hep port name without a letter",
        res(
            "HostEndpoint",
            {
                "node": "n1",
                "interfaceName": "eth0",
                "ports": [{"name": "80", "protocol": "TCP", "port": 80}],
            },
        ),
        "spec.ports[0].name: '80' is not a valid port name: needs a letter",
    ),
    (
        "wep bad mac",
        res("WorkloadEndpoint", {"mac": "zz:zz"}, namespace="a"),
        "spec.mac: 'zz:zz' is not a valid MAC address",
    ),
    (
        "wep bad interface",
        res("WorkloadEndpoint", {"interfaceName": "a-very-long-interface-name"}, namespace="a"),
        "spec.interfaceName",
    ),
    (
        "wep v4 gateway v6",
        res("WorkloadEndpoint", {"ipv4Gateway": "2001:db8::1"}, namespace="a"),
        "spec.ipv4Gateway",
    ),
    (
        "wep name mismatch",
        res(
            "WorkloadEndpoint",
            {"node": "n1", "orchestrator": "k8s", "pod": "p", "endpoint": "eth0"},
            name="wrong",
            namespace="a",
        ),
        "does not match the name derived from the spec: 'n1-k8s-p-eth0'",
    ),
    (
        "wep port protocol",
        res(
            "WorkloadEndpoint",
            {"ports": [{"name": "x", "protocol": "ICMP", "port": 1}]},
            namespace="a",
        ),
        "spec.ports[0].protocol",
    ),
    (
        "hep without node",
        res("HostEndpoint", {"interfaceName": "eth0"}),
        "spec.node: no node has been specified",
    ),
    (
        "hep without target",
        res("HostEndpoint", {"node": "n1"}),
        "spec.interfaceName: no interfaceName or expectedIPs",
    ),
    (
        "bgp peer AS",
        res("BGPPeer", {"peerIP": "198.51.100.1", "asNumber": 4294967296}),
        "spec.asNumber: 4294967296 is not a valid AS number",
    ),
    (
        "bgp peer no AS",
        res("BGPPeer", {"peerIP": "198.51.100.1"}),
        "spec.asNumber: required when peerIP is specified",
    ),
    (
        "bgp peer bad IP",
        res("BGPPeer", {"peerIP": "1.2.3", "asNumber": 1}),
        "spec.peerIP: '1.2.3' is not a valid peer IP",
    ),
    (
        "bgp password secret name",
        res("BGPPeer", {**_PW_PEER, "password": _pw("../etc", "k")}),
        "spec.password.secretKeyRef.name: '../etc' is not a valid name",
    ),
    (
        "bgp password secret key",
        res("BGPPeer", {**_PW_PEER, "password": _pw("bgp", "..")}),
        "spec.password.secretKeyRef.key: '..' is not a valid secret key",
    ),
    (
        "bgp password key with a slash",
        res("BGPPeer", {**_PW_PEER, "password": _pw("bgp", "a/b")}),
        "spec.password.secretKeyRef.key: 'a/b' is not a valid secret key",
    ),
    (
        "bgp password unknown key",
        res(
            "BGPPeer", {**_PW_PEER, "password": {"secretKeyRef": {"name": "a", "key": "b", "x": 1}}}
        ),
        "spec.password.secretKeyRef.x",
    ),
    (
        "bgp mesh password secret name",
        res("BGPConfiguration", {"nodeMeshPassword": _pw("A_B", "k")}, name="default"),
        "spec.nodeMeshPassword.secretKeyRef.name: 'A_B' is not a valid name",
    ),
    (
        "bgp peer node and selector",
        res("BGPPeer", {"node": "a", "nodeSelector": "all()", "peerIP": "1.2.3.4", "asNumber": 1}),
        "spec.node: must be empty when nodeSelector",
    ),
    (
        "bgp config name",
        res("BGPConfiguration", {}, name="other"),
        "must be named 'default' or 'node.<nodename>'",
    ),
    (
        "bgp community",
        res(
            "BGPConfiguration",
            {
                "communities": [{"name": "a", "value": "x"}],
                "prefixAdvertisements": [{"cidr": "10.0.0.0/8", "communities": ["a"]}],
            },
            name="default",
        ),
        "spec.communities[0].value",
    ),
    (
        "felix unknown field",
        res("FelixConfiguration", {"logSeverityScren": "Info"}, name="default"),
        "spec.logSeverityScren: unknown field",
    ),
    (
        "felix bad enum",
        res("FelixConfiguration", {"logSeverityScreen": "Loud"}, name="default"),
        "spec.logSeverityScreen",
    ),
    (
        "felix bad duration",
        res("FelixConfiguration", {"reportingInterval": "soon"}, name="default"),
        'spec.reportingInterval: "soon" is not a valid duration',
    ),
    (
        "felix bad bool",
        res("FelixConfiguration", {"ipv6Support": "yes"}, name="default"),
        "spec.ipv6Support",
    ),
    (
        "felix bad name",
        res("FelixConfiguration", {}, name="global"),
        "must be named 'default' or 'node.<nodename>'",
    ),
    (
        "ipam config name",
        res("IPAMConfiguration", {}, name="other"),
        "IPAMConfiguration must be named 'default'",
    ),
    (
        "ipam negative",
        res("IPAMConfiguration", {"maxBlocksPerHost": -1}, name="default"),
        "spec.maxBlocksPerHost",
    ),
    (
        "cluster info name",
        res("ClusterInformation", {}, name="x"),
        "ClusterInformation must be named 'default'",
    ),
    (
        "node bad address",
        res("Node", {"bgp": {"ipv4Address": "2001:db8::1/64"}}),
        "spec.bgp.ipv4Address",
    ),
    (
        "node VXLAN tunnel address of the wrong family",
        res("Node", {"ipv4VXLANTunnelAddr": "2001:db8::1"}),
        "spec.ipv4VXLANTunnelAddr",
    ),
    (
        "node VTEP MAC malformed",
        res("Node", {"vxlanTunnelMACAddrV6": "66:00:11"}),
        "spec.vxlanTunnelMACAddrV6",
    ),
    (
        "networkset namespace label",
        res(
            "NetworkSet",
            {"nets": ["10.0.0.0/8"]},
            namespace="a",
            labels={"projectcalico.org/namespace": "a"},
        ),
        "projectcalico.org/namespace is not a valid label name",
    ),
    (
        "kind mismatch in data",
        {"apiVersion": "projectcalico.org/v3", "kind": "Pod", "metadata": {"name": "x"}},
        "kind: 'Pod' is not a supported kind",
    ),
    (
        "wrong apiVersion",
        {
            "apiVersion": "v1",
            "kind": "IPPool",
            "metadata": {"name": "x"},
            "spec": {"cidr": "10.0.0.0/8"},
        },
        "apiVersion: 'v1' is not supported",
    ),
]


@pytest.mark.parametrize(("case", "doc", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_resources_name_field_and_reason(
    case: str, doc: dict[str, Any], expected: str
) -> None:
    assert expected in error_of(doc)


def test_message_is_a_single_line() -> None:
    message = error_of(res("GlobalNetworkPolicy", {"order": "x", "selctor": "y"}))
    assert "\n" not in message
    assert "spec.order" in message and "spec.selctor" in message


def test_malformed_yaml_is_reported() -> None:
    with pytest.raises(ResourceError, match="cannot parse YAML/JSON"):
        parse_manifest("kind: [unclosed", "file.yaml")


@pytest.mark.parametrize("text", ["- " * 5000, '{"a": ' * 5000, "spec: " + "{a: " * 800])
def test_deeply_nested_input_is_reported(text: str) -> None:
    """Found by tests/fuzz: the YAML loader's recursion was a RecursionError traceback."""
    with pytest.raises(
        ResourceError, match=r"file\.yaml: cannot parse YAML/JSON: nested too deeply"
    ):
        parse_manifest(text, "file.yaml")


@pytest.mark.parametrize("scalar", [".", "-.", "+._", "._"])
def test_a_point_without_digits_is_a_string(scalar: str) -> None:
    """Found by tests/fuzz: the float resolver matched a bare '.', whose float() failed (a
    ValueError traceback); Go's YAML reads it as a string."""
    docs = load_documents(f"a: {scalar}\nb: .5\nc: -1.e3\nd: 1_0.5\n")
    assert docs == [{"a": scalar, "b": 0.5, "c": -1000.0, "d": 10.5}]


def test_json_escaped_astral_characters_are_read_as_text() -> None:
    """Found by tests/fuzz: YAML reads \\ud83d\\ude00 as two surrogates, which pydantic
    could not encode (a UnicodeEncodeError traceback)."""
    text = '{"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "a",'
    text += ' "annotations": {"x": "\\ud83d\\ude00"}}, "spec": {"cidr": "198.19.0.0/16"}}'
    assert parse_manifest(text)[0].metadata.annotations == {"x": "\U0001f600"}
    with pytest.raises(ResourceError, match="half a surrogate pair"):
        parse_manifest(text.replace("\\ude00", ""), "file.yaml")


def test_non_mapping_document_is_reported() -> None:
    with pytest.raises(ResourceError, match="document 1"):
        parse_manifest("- just\n- a list\n", "f.yaml")


VALID: list[tuple[str, dict[str, Any]]] = [
    (
        "named port and range",
        res(
            "GlobalNetworkPolicy",
            {"ingress": [rule(protocol="TCP", destination={"ports": ["http", "1:65535", 8080]})]},
        ),
    ),
    (
        "numeric protocol with ports",
        res("GlobalNetworkPolicy", {"ingress": [rule(protocol=6, destination={"ports": [22]})]}),
    ),
    (
        "SCTP ports",
        res(
            "GlobalNetworkPolicy",
            {"ingress": [rule(protocol="SCTP", destination={"ports": [3868]})]},
        ),
    ),
    (
        "ICMPv6 type/code",
        res(
            "GlobalNetworkPolicy",
            {"ingress": [rule(protocol="ICMPv6", icmp={"type": 128, "code": 0}, ipVersion=6)]},
        ),
    ),
    (
        "not fields",
        res(
            "GlobalNetworkPolicy",
            {
                "ingress": [
                    rule(
                        notProtocol="UDP",
                        source={"notNets": ["10.0.0.0/8"], "notSelector": "a == 'b'"},
                    )
                ]
            },
        ),
    ),
    (
        "global namespaceSelector",
        res(
            "NetworkPolicy",
            {"ingress": [rule(source={"namespaceSelector": "global()"})]},
            namespace="a",
        ),
    ),
    ("tiered names", res("GlobalNetworkPolicy", {"tier": "security"}, name="security.allow")),
    ("default-tier prefix", res("GlobalNetworkPolicy", {}, name="default.allow")),
    ("k8s policy name", res("NetworkPolicy", {}, name="knp.default.my-policy.v1", namespace="a")),
    ("v6 pool", res("IPPool", {"cidr": "2001:db8::/64"})),
    ("bgp peer with port", res("BGPPeer", {"peerIP": "[2001:db8::1]:1179", "asNumber": "1.10"})),
    ("bgp peer password", res("BGPPeer", {**_PW_PEER, "password": _pw("bgp-peers.x", "r1.pw_1")})),
    (
        "node-specific config",
        res("FelixConfiguration", {"interfacePrefix": "tap"}, name="node.host-1"),
    ),
    (
        "wep allowed IPs (networking-calico's address pairs)",
        res(
            "WorkloadEndpoint",
            {
                "ipNetworks": ["10.0.0.1/32", "10.0.0.9/32", "2001:db8::9/128"],
                "allowedIps": ["10.0.0.9/32", "2001:db8::9"],
            },
            namespace="a",
        ),
    ),
    (
        "fields newer upstream, at their off values",
        res("IPAMConfiguration", {"ipCooldownSeconds": 0}, name="default"),
    ),
    (
        "lb aggregation",
        res("BGPConfiguration", {"serviceLoadBalancerAggregation": "Disabled"}, name="default"),
    ),
    (
        "flow table off",
        res(
            "FelixConfiguration",
            {"nftablesFlowTableOffload": "Disabled", "nftablesFlowTableDataIfacePattern": ""},
            name="default",
        ),
    ),
    (
        "node interfaces (written by calico/node)",
        res("Node", {"interfaces": [{"name": "eth0", "addresses": ["198.18.0.11/24"]}]}),
    ),
    (
        "k8s graceful-deletion metadata",
        res("Profile", {}, deletionGracePeriodSeconds=30, managedFields=[{"manager": "x"}]),
    ),
    ("hep expected IPs only", res("HostEndpoint", {"node": "n1", "expectedIPs": ["198.51.100.1"]})),
]


@pytest.mark.parametrize(("case", "doc"), VALID, ids=[c[0] for c in VALID])
def test_valid_resources_round_trip(case: str, doc: dict[str, Any]) -> None:
    resource = parse_resource(doc)
    again = parse_resource(yaml.safe_load(yaml.safe_dump(resource.to_dict())))
    assert again == resource
    assert again.to_dict() == resource.to_dict()
