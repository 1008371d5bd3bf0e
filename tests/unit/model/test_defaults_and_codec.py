"""Defaulting, manifest formats and round trips of the example manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from calico.model import KINDS, kind_for, load_documents, parse_manifest, parse_resource
from calico.model.codec import list_document, to_json, to_yaml
from calico.model.endpoints import WorkloadEndpoint, workload_endpoint_name
from calico.model.fields import duration_seconds
from calico.model.keys import ResourceKey, kind_prefix, parse_key
from calico.model.network import IPPool
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy, Tier

EXAMPLES = sorted((Path(__file__).parents[3] / "examples").glob("*.yaml"))
POLICY = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec: {selector: all()%s}
"""


@pytest.mark.parametrize(
    ("rules", "types"),
    [
        ("", ["Ingress"]),
        (", ingress: [{action: Allow}]", ["Ingress"]),
        (", egress: [{action: Allow}]", ["Egress"]),
        (", ingress: [{action: Deny}], egress: [{action: Allow}]", ["Ingress", "Egress"]),
        (", types: [Egress], ingress: [{action: Deny}]", ["Egress"]),
    ],
)
def test_policy_types_default_like_calico(rules: str, types: list[str]) -> None:
    (policy,) = parse_manifest(POLICY % rules)
    assert isinstance(policy, GlobalNetworkPolicy)
    assert policy.spec.types == types
    assert policy.spec.tier == "default"


def test_ippool_defaults() -> None:
    header = "kind: IPPool\napiVersion: projectcalico.org/v3\n"
    (v4, v6) = parse_manifest(
        f"{header}metadata: {{name: a}}\nspec: {{cidr: 10.1.0.0/16}}\n---\n"
        f"{header}metadata: {{name: b}}\nspec: {{cidr: '2001:db8::/64'}}"
    )
    assert isinstance(v4, IPPool) and isinstance(v6, IPPool)
    assert (v4.spec.blockSize, v6.spec.blockSize) == (26, 122)
    assert v4.spec.ipipMode == v4.spec.vxlanMode == "Never"
    assert v4.spec.nodeSelector == "all()"
    assert v4.spec.allowedUses == ["Workload", "Tunnel"]
    assert v4.spec.natOutgoing is None  # not set, so not printed (omitempty, as calicoctl)


def test_tier_defaults() -> None:
    tier = Tier.model_validate({"metadata": {"name": "default"}})
    assert tier.spec.order == 1_000_000 and tier.spec.defaultAction == "Deny"
    assert tier.to_dict()["spec"]["order"] == 1_000_000
    assert isinstance(tier.to_dict()["spec"]["order"], int)


def test_workload_endpoint_name_and_labels() -> None:
    spec = {"node": "host-1", "orchestrator": "k8s", "pod": "web-0", "endpoint": "eth0"}
    wep = WorkloadEndpoint.model_validate(
        {"metadata": {"namespace": "shop", "labels": {"app": "x"}}, "spec": spec}
    )
    assert (
        wep.name
        == "host--1-k8s-web--0-eth0"
        == workload_endpoint_name("host-1", "k8s", "web-0", "eth0")
    )
    assert wep.metadata.labels == {
        "app": "x",
        "projectcalico.org/namespace": "shop",
        "projectcalico.org/orchestrator": "k8s",
    }


def test_namespace_defaults_and_override() -> None:
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy", "metadata": {"name": "p"}}
    assert parse_resource(doc).namespace == "default"
    assert parse_resource(doc, default_namespace="prod").namespace == "prod"
    explicit = {**doc, "metadata": {"name": "p", "namespace": "qa"}}
    assert parse_resource(explicit, default_namespace="prod").namespace == "qa"


def test_go_style_yaml_keeps_port_ranges_and_timestamps_as_strings() -> None:
    text = POLICY % ", ingress: [{action: Allow, protocol: TCP, destination: {ports: [1:30, 80]}}]"
    (policy,) = parse_manifest(text)
    assert isinstance(policy, GlobalNetworkPolicy)
    assert policy.spec.ingress is not None and policy.spec.ingress[0].destination is not None
    assert policy.spec.ingress[0].destination.ports == ["1:30", 80]
    (doc,) = load_documents("metadata: {creationTimestamp: 2026-01-02T03:04:05Z}")
    assert doc["metadata"]["creationTimestamp"] == "2026-01-02T03:04:05Z"


def test_json_input_and_list_kinds() -> None:
    item = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Tier",
        "metadata": {"name": "t1"},
        "spec": {"order": 5},
    }
    assert [r.name for r in parse_manifest(json.dumps(item))] == ["t1"]
    for kind in ("List", "TierList"):
        wrapped = {
            "apiVersion": "v1",
            "kind": kind,
            "items": [item, {**item, "metadata": {"name": "t2"}}],
        }
        assert [r.name for r in parse_manifest(yaml.safe_dump(wrapped))] == ["t1", "t2"]


def test_empty_documents_are_ignored() -> None:
    assert parse_manifest("---\n---\n") == []


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_round_trip_through_yaml_and_json(path: Path) -> None:
    resources = parse_manifest(path.read_text(), path.name)
    assert resources
    for fmt in (to_yaml, to_json):
        text = fmt(list_document("Mixed", resources))
        assert parse_manifest(text) == resources


def test_every_kind_has_a_key_round_trip() -> None:
    for cls in KINDS.values():
        key = ResourceKey(cls, "n1", "ns1" if cls.NAMESPACED else None)
        assert parse_key(key.path) == key
        assert key.path.startswith(kind_prefix(cls))
        assert (
            kind_for(cls.KIND) is cls
            and kind_for(cls.PLURAL) is cls
            and kind_for(cls.KIND.upper()) is cls
        )
    assert (
        ResourceKey(NetworkPolicy, "p", "ns").path
        == "/calico/resources/v3/projectcalico.org/networkpolicies/ns/p"
    )
    assert parse_key("/calico/resources/v3/projectcalico.org/networkpolicies/p") is None
    assert parse_key("/calico/resources/v3/projectcalico.org/pods/p") is None


@pytest.mark.parametrize(
    ("alias", "kind"),
    [
        ("gnp", "GlobalNetworkPolicy"),
        ("np", "NetworkPolicy"),
        ("wep", "WorkloadEndpoint"),
        ("hep", "HostEndpoint"),
        ("ippool", "IPPool"),
        ("ipp", "IPPool"),
        ("bgpp", "BGPPeer"),
        ("felixconfig", "FelixConfiguration"),
    ],
)
def test_calicoctl_aliases(alias: str, kind: str) -> None:
    assert kind == kind_for(alias).KIND
    with pytest.raises(ValueError, match="not supported"):
        kind_for("pods")


@pytest.mark.parametrize(
    ("orchestrator", "expected"),
    [
        ("k8s", "n1-k8s-pod--a-eth0"),
        ("cni", "n1-cni-abc123-eth0"),
        ("libnetwork", "n1-libnetwork-libnetwork-eth0"),
        ("openstack", "n1-openstack-vm--1-eth0"),
    ],
)
def test_workload_endpoint_names_follow_libcalico_go(orchestrator: str, expected: str) -> None:
    spec = {
        "node": "n1",
        "orchestrator": orchestrator,
        "pod": "pod-a",
        "containerID": "abc123",
        "workload": "vm-1",
        "endpoint": "eth0",
    }
    assert (
        WorkloadEndpoint.model_validate({"metadata": {"namespace": "x"}, "spec": spec}).name
        == expected
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("500ms", 0.5), ("2us", 2e-6), ("0", 0.0)],
)  # fmt: skip
def test_go_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "1x", "s", "-1s"])
def test_not_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a valid duration"):
        duration_seconds(text)
