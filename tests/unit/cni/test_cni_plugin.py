"""The calico plugin's ADD/DEL/CHECK against a memory datastore, a fake IPAM and a fake kernel:
what it writes, what it returns, and that a failure at any step leaves nothing behind."""

from __future__ import annotations

import pytest
from cni_harness import CONTAINER_ID, CONTAINER_MAC, NETNS, Harness, netconf

from calico.cni.netsetup import NetnsNotFound, NetSetupError
from calico.datastore.api import DatastoreUnavailable
from calico.datastore.client import ResourceNotFound
from calico.model.endpoints import WorkloadEndpoint
from calico.model.network import ClusterInformation
from calico.model.policy import Profile

WEP = f"node--1-cni-{CONTAINER_ID}-eth0"
HOST_VETH = "cali" + CONTAINER_ID[:11]
K8S_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart;K8S_POD_INFRA_CONTAINER_ID=x"


def assert_nothing_left(h: Harness) -> None:
    assert h.services.ipam.allocations == {}
    assert h.services.net.wired == {}
    assert h.client.list(WorkloadEndpoint).items == []


def test_add_plain_cni(harness: Harness) -> None:
    out = harness.calico("ADD", netconf(args={"cni": {"labels": [{"key": "app", "value": "db"}]}}))
    assert out.code == 0, out.doc
    assert out.doc == {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": HOST_VETH, "mac": "ee:ee:ee:ee:ee:ee"},
            {"name": "eth0", "mac": CONTAINER_MAC, "sandbox": NETNS},
        ],
        "ips": [{"address": "198.19.0.0/32", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
        "dns": {},
    }
    wep = harness.client.get(WorkloadEndpoint, WEP, "default")
    spec = wep.spec
    assert (spec.orchestrator, spec.node, spec.containerID, spec.workload) == (
        "cni", "node-1", CONTAINER_ID, CONTAINER_ID,
    )  # fmt: skip
    assert (spec.endpoint, spec.interfaceName, spec.mac) == ("eth0", HOST_VETH, CONTAINER_MAC)
    assert (spec.ipNetworks, spec.profiles) == (["198.19.0.0/32"], ["net1"])
    assert wep.metadata.labels == {
        "app": "db",
        "projectcalico.org/namespace": "default",
        "projectcalico.org/orchestrator": "cni",
    }
    handle, attrs = harness.services.ipam.allocations["198.19.0.0"]
    assert handle == f"net1.{CONTAINER_ID}" and attrs["node"] == "node-1" and "pod" not in attrs
    wired = harness.services.net.wired[(NETNS, "eth0")]
    assert (wired.host_ifname, wired.addresses) == (HOST_VETH, ("198.19.0.0",))
    profile = harness.client.get(Profile, "net1").to_dict()["spec"]
    assert profile == {
        "ingress": [{"action": "Allow", "source": {"selector": "has(net1)"}}],
        "egress": [{"action": "Allow"}],
        "labelsToApply": {"net1": ""},
    }


def test_add_kubernetes_style(harness: Harness) -> None:
    out = harness.calico("ADD", netconf("0.3.1"), CNI_ARGS=K8S_ARGS)
    assert out.code == 0, out.doc
    assert out.doc is not None
    assert out.doc["ips"] == [{"version": "4", "address": "198.19.0.0/32", "interface": 1}]
    wep = harness.client.get(WorkloadEndpoint, "node--1-k8s-cart-eth0", "shop")
    assert (wep.spec.orchestrator, wep.spec.pod, wep.spec.profiles) == ("k8s", "cart", ["net1"])
    assert wep.spec.interfaceName == out.doc["interfaces"][0]["name"]
    assert wep.spec.interfaceName is not None and wep.spec.interfaceName.startswith("cali")
    _, attrs = harness.services.ipam.allocations["198.19.0.0"]
    assert (attrs["pod"], attrs["namespace"]) == ("cart", "shop")
    ingress = harness.client.get(Profile, "net1").to_dict()["spec"]["ingress"]
    assert ingress == [{"action": "Allow"}]  # Calico's k8s-style profile is open


def test_add_kubernetes_policy_uses_namespace_profile(harness: Harness) -> None:
    out = harness.calico("ADD", netconf(policy={"type": "k8s"}), CNI_ARGS=K8S_ARGS)
    assert out.code == 0, out.doc
    wep = harness.client.get(WorkloadEndpoint, "node--1-k8s-cart-eth0", "shop")
    assert wep.spec.profiles == ["kns.shop"]
    spec = harness.client.get(Profile, "kns.shop").to_dict()["spec"]
    assert spec["labelsToApply"] == {"pcns.projectcalico.org/name": "shop"}


def test_add_dual_stack(harness: Harness) -> None:
    conf = netconf("0.2.0", ipam={"type": "calico-ipam", "assign_ipv6": "true"})
    out = harness.calico("ADD", conf)
    assert out.code == 0, out.doc
    assert out.doc is not None
    assert out.doc["ip6"] == {
        "ip": "2001:db8:100::/128",
        "routes": [{"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"}],
    }
    wep = harness.client.get(WorkloadEndpoint, WEP, "default")
    assert wep.spec.ipNetworks == ["198.19.0.0/32", "2001:db8:100::/128"]


def test_requested_address(harness: Harness) -> None:
    out = harness.calico("ADD", netconf(), CNI_ARGS="IP=198.19.0.5")
    assert out.code == 0 and out.doc is not None
    assert out.doc["ips"][0]["address"] == "198.19.0.5/32"
    bad = harness.calico("ADD", netconf(), CNI_ARGS="IP=nope", CNI_CONTAINERID="other")
    assert (bad.code, bad.doc and bad.doc["code"]) == (1, 4)


def test_repeated_add_returns_the_existing_endpoint(harness: Harness) -> None:
    first = harness.calico("ADD", netconf())
    second = harness.calico("ADD", netconf())
    assert second.code == 0 and second.doc is not None and first.doc is not None
    assert second.doc["ips"] == first.doc["ips"]
    assert second.doc["interfaces"] == first.doc["interfaces"]
    assert len(harness.services.ipam.allocations) == 1


def test_del_cleans_up_and_is_idempotent(harness: Harness) -> None:
    assert harness.calico("ADD", netconf()).code == 0
    harness.services.ipam.assign_ip("198.19.0.6", CONTAINER_ID, "node-1")  # legacy handle
    for _ in range(2):
        out = harness.calico("DEL", netconf())
        assert (out.code, out.doc) == (0, None)
        assert_nothing_left(harness)
    assert harness.calico("DEL", netconf(), CNI_NETNS="").code == 0  # netns already gone


def test_del_of_an_older_sandbox_keeps_the_newer_endpoint(harness: Harness) -> None:
    assert harness.calico("ADD", netconf(), CNI_ARGS=K8S_ARGS, CNI_CONTAINERID="old").code == 0
    new = harness.calico(
        "ADD", netconf(), CNI_ARGS=K8S_ARGS, CNI_CONTAINERID="new", CNI_NETNS="/run/netns/new"
    )
    assert new.code == 0, new.doc
    assert harness.calico("DEL", netconf(), CNI_ARGS=K8S_ARGS, CNI_CONTAINERID="old").code == 0
    wep = harness.client.get(WorkloadEndpoint, "node--1-k8s-cart-eth0", "shop")
    assert wep.spec.containerID == "new"
    assert next(iter(harness.services.ipam.allocations.values()))[0] == "net1.new"


def test_check(harness: Harness) -> None:
    assert harness.calico("CHECK", netconf()).doc == {
        "cniVersion": "1.0.0",
        "code": 104,
        "msg": f"no WorkloadEndpoint {WEP} for this container",
    }
    assert harness.calico("ADD", netconf()).code == 0
    ok = harness.calico("CHECK", netconf())
    assert (ok.code, ok.doc) == (0, None)
    old = harness.calico("CHECK", netconf("0.3.1"))
    assert old.doc is not None and old.doc["code"] == 1
    harness.services.net.wired.clear()
    broken = harness.calico("CHECK", netconf())
    assert broken.doc is not None and broken.doc["code"] == 104


@pytest.mark.parametrize(
    ("fail", "code"),
    [
        (NetSetupError("eth0 already exists"), 102),
        (NetnsNotFound("network namespace /x does not exist"), 3),
    ],
)
def test_networking_failure_leaves_nothing(harness: Harness, fail: Exception, code: int) -> None:
    harness.services.net.fail = fail
    out = harness.calico("ADD", netconf())
    assert (out.code, out.doc and out.doc["code"]) == (1, code)
    assert_nothing_left(harness)


def test_endpoint_write_failure_undoes_everything(harness: Harness) -> None:
    original = harness.client.create

    def create(resource: object) -> object:
        if isinstance(resource, WorkloadEndpoint):
            raise DatastoreUnavailable("etcd went away")
        return original(resource)  # type: ignore[type-var]

    harness.client.create = create  # type: ignore[method-assign,assignment]
    out = harness.calico("ADD", netconf())
    assert out.doc is not None and (out.code, out.doc["code"]) == (1, 11)
    assert_nothing_left(harness)
    assert harness.services.net.removals == [(NETNS, "eth0")]


def test_pool_exhausted(harness: Harness) -> None:
    harness.services.ipam.v4 = []
    out = harness.calico("ADD", netconf())
    assert out.doc is not None and (out.code, out.doc["code"]) == (1, 101)
    assert "no free addresses" in out.doc["msg"]
    assert_nothing_left(harness)


def test_datastore_down(harness: Harness) -> None:
    harness.backend.set_unavailable(True)
    out = harness.calico("ADD", netconf())
    assert out.doc is not None and (out.code, out.doc["code"]) == (1, 11)
    assert harness.services.ipam.requests == [] and harness.services.net.wired == {}
    # DEL still removes the container's interface, and reports the outage so it is retried.
    harness.services.net.wired[(NETNS, "eth0")] = None  # type: ignore[assignment]
    out = harness.calico("DEL", netconf())
    assert out.doc is not None and (out.code, out.doc["code"]) == (1, 11)
    assert harness.services.net.wired == {}


def test_datastore_not_ready(harness: Harness) -> None:
    info = harness.client.get(ClusterInformation, "default")
    info.spec.datastoreReady = False
    harness.client.replace(info)
    out = harness.calico("ADD", netconf())
    assert out.doc is not None and out.doc["code"] == 11
    assert harness.services.ipam.requests == []


@pytest.mark.parametrize(
    ("conf", "env", "code"),
    [
        (b"{", {}, 6),
        (netconf(ipam={"type": "host-local"}), {}, 7),
        (netconf("9.9.9"), {}, 1),
        (netconf(), {"CNI_NETNS": None}, 4),
        (netconf(), {"CNI_COMMAND": "GC"}, 4),
        (netconf(name="UpperCase"), {}, 7),  # cannot name a profile
        (netconf(), {"CNI_CONTAINERID": "Upper"}, 7),  # cannot name an endpoint
    ],
)
def test_bad_input_changes_nothing(
    harness: Harness, conf: object, env: dict[str, str], code: int
) -> None:
    out = harness.calico("ADD", conf, **env)  # type: ignore[arg-type]
    assert out.doc is not None and (out.code, out.doc["code"]) == (1, code)
    assert harness.services.ipam.requests == []
    assert_nothing_left(harness)


def test_unexpected_exception_is_code_100(harness: Harness) -> None:
    harness.services.net.fail = RuntimeError("boom")
    out = harness.calico("ADD", netconf())
    assert out.doc is not None and (out.code, out.doc["code"], out.doc["msg"]) == (1, 100, "boom")
    assert_nothing_left(harness)


def test_version(harness: Harness) -> None:
    out = harness.calico("VERSION", b"", CNI_CONTAINERID=None, CNI_NETNS=None)
    assert out.code == 0 and out.doc is not None and "1.0.0" in out.doc["supportedVersions"]


def test_wep_gone_is_fine_for_del(harness: Harness) -> None:
    assert harness.calico("ADD", netconf()).code == 0
    harness.client.delete(WorkloadEndpoint, WEP, "default")
    assert harness.calico("DEL", netconf()).code == 0
    with pytest.raises(ResourceNotFound):
        harness.client.get(WorkloadEndpoint, WEP, "default")
    assert_nothing_left(harness)
