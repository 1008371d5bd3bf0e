"""The installed `calico` plugin, run as a runtime runs it, on a host running real Felix against
real etcd: containers get addresses from Calico IPAM, reach each other through the host, are
subject to policy, and DEL (or a failed ADD) leaves no veth, endpoint or address behind."""

from __future__ import annotations

import json

import pytest

from calico import programs
from calico.testing.workloads import connects, ping, serve
from fv.conftest import wait_until

from .cni_exec import NETWORK, CniRunner

pytestmark = pytest.mark.fv


def test_containers_connect_policy_applies_and_del_cleans_up(cni: CniRunner) -> None:
    ns = cni.cluster.ns
    client = cni.container("c1", role="client")
    server = cni.container(
        "c2", "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart", role="server"
    )
    add1, add2 = cni.exec("ADD", client), cni.exec("ADD", server)
    assert add1.exit_code == 0, add1
    assert add2.exit_code == 0, add2
    (c4, c6), (s4, s6) = add1.addresses(), add2.addresses()
    assert add1.doc is not None and add1.doc["interfaces"][0]["name"] == "cali" + client.id[:11]
    assert add1.doc["interfaces"][1]["sandbox"] == client.netns_path
    wep = cni.endpoint_of(server)
    assert wep is not None and wep.spec.orchestrator == "k8s" and wep.spec.pod == "cart"
    assert wep.spec.ipNetworks == [f"{s4}/32", f"{s6}/128"]

    serve(ns, server.netns, s4, 8080)
    wait_until(lambda: ping(ns, client.netns, s4), what="IPv4 ping client->server")
    wait_until(lambda: ping(ns, client.netns, s6), what="IPv6 ping client->server")
    assert ping(ns, server.netns, c4) and ping(ns, server.netns, c6)
    wait_until(lambda: connects(ns, client.netns, "tcp", s4, 8080), what="server listening")

    _only_tcp_8080_from_clients(cni)
    wait_until(lambda: not ping(ns, client.netns, s4), what="policy blocks ping to the server")
    assert connects(ns, client.netns, "tcp", s4, 8080)
    assert ping(ns, server.netns, c4)  # the client's ingress is the network profile's

    check = cni.exec("CHECK", client)
    assert (check.exit_code, check.doc) == (0, None), check
    for _ in range(2):  # DEL is idempotent
        out = cni.exec("DEL", client)
        assert (out.exit_code, out.doc) == (0, None), out
        cni.assert_nothing_left(client, [c4, c6])
    assert not ping(ns, server.netns, c4)

    out = cni.exec("DEL", server)
    assert out.exit_code == 0, out
    cni.assert_nothing_left(server, [s4, s6])


def _only_tcp_8080_from_clients(cni: CniRunner) -> None:
    cni.cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "server-ingress"},
        "spec": {"selector": "role == 'server'", "ingress": [
            {"action": "Allow", "protocol": "TCP", "source": {"selector": "role == 'client'"},
             "destination": {"ports": [8080]}},
        ]},
    })  # fmt: skip


def test_del_after_the_namespace_is_gone(cni: CniRunner) -> None:
    box = cni.container("gone")
    address = cni.exec("ADD", box).addresses()[0]
    programs.run(["ip", "netns", "del", box.netns], check=True)
    cni.cluster.ns.names.remove(box.netns)
    for _ in range(2):
        out = cni.exec("DEL", box)
        assert out.exit_code == 0, out
    # The kernel destroys an unused namespace (and so the veth pair) asynchronously.
    wait_until(lambda: "cali" + box.id[:11] not in cni.host_links(), what="veth gone")
    cni.assert_nothing_left(box, [address])
    assert cni.exec("DEL", box, CNI_NETNS=None).exit_code == 0


@pytest.mark.parametrize(
    ("conf", "env", "code"),
    [
        (b'{"cniVersion": "1.0.0", "name": ', {}, 6),
        (
            {
                "cniVersion": "1.0.0",
                "name": NETWORK,
                "type": "calico",
                "ipam": {"type": "host-local"},
            },
            {},
            7,
        ),
        (None, {"CNI_NETNS": None}, 4),
        (None, {"CNI_NETNS": "/run/netns/no-such-namespace"}, 3),
    ],
)
def test_bad_input_leaves_nothing(
    cni: CniRunner, conf: dict[str, object] | bytes | None, env: dict[str, str | None], code: int
) -> None:
    box = cni.container("bad")
    out = cni.exec("ADD", box, conf, **env)  # type: ignore[arg-type]
    assert (out.exit_code, out.error_code) == (1, code), out
    assert out.doc is not None and out.doc["msg"]
    cni.assert_nothing_left(box)


def test_exhausted_pool(cni: CniRunner) -> None:
    cni.cluster.apply({
        "kind": "IPPool", "metadata": {"name": "tiny"},
        "spec": {"cidr": "198.19.9.0/31", "blockSize": 31},
    })  # fmt: skip
    conf = {"ipam": {"type": "calico-ipam", "ipv4_pools": ["tiny"]}}
    boxes = [cni.container(f"x{i}") for i in range(3)]
    for box in boxes[:2]:
        out = cni.exec("ADD", box, cni.conf(box, **conf))
        assert out.exit_code == 0, out
    out = cni.exec("ADD", boxes[2], cni.conf(boxes[2], **conf))
    assert (out.exit_code, out.error_code) == (1, 101), out
    cni.assert_nothing_left(boxes[2])
    assert sorted(cni.handle_ips(b)[0] for b in boxes[:2]) == ["198.19.9.0", "198.19.9.1"]


def test_etcd_down(cni: CniRunner) -> None:
    box = cni.container("down")
    cni.cluster.etcd.stop()
    try:
        out = cni.exec("ADD", box)
        assert (out.exit_code, out.error_code) == (1, 11), out
        assert "eth0" not in cni.container_links(box)
        assert "cali" + box.id[:11] not in cni.host_links()
        assert cni.exec("DEL", box).error_code == 11  # the runtime must retry the DEL
    finally:
        cni.cluster.etcd.start()
    cni.assert_nothing_left(box)
    assert cni.exec("DEL", box).exit_code == 0


def test_calico_ipam_plugin(cni: CniRunner) -> None:
    box = cni.container("ipam")
    out = cni.exec("ADD", box, plugin="calico-ipam")
    assert out.exit_code == 0 and out.doc is not None, out
    assert "interfaces" not in out.doc
    cidrs = [ip["address"] for ip in out.doc["ips"]]
    assert [c.split("/")[1] for c in cidrs] == ["26", "122"]  # the blocks' prefixes
    assert sorted(cni.handle_ips(box)) == sorted(c.split("/")[0] for c in cidrs)
    assert cni.container_links(box) == {"lo"}
    assert cni.exec("DEL", box, plugin="calico-ipam").exit_code == 0
    assert cni.handle_ips(box) == []


def test_ipv6_only_with_mtu(cni: CniRunner) -> None:
    box = cni.container("v6")
    conf = cni.conf(
        box, mtu=1400, ipam={"type": "calico-ipam", "assign_ipv4": "false", "assign_ipv6": "true"}
    )
    out = cni.exec("ADD", box, conf)
    (address,) = out.addresses()
    assert out.doc is not None and out.doc["routes"] == [
        {"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"}
    ]
    ns = cni.cluster.ns
    link = json.loads(ns.exec(box.netns, ["ip", "-j", "addr", "show", "eth0"]).stdout)[0]
    assert link["mtu"] == 1400
    assert {(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["scope"] == "global"} == {
        (address, 128)
    }
    routes = ns.exec(box.netns, ["ip", "-4", "route", "show"]).stdout
    assert routes.strip() == ""  # no IPv4 at all
    host_veth = json.loads(
        cni.host.exec(["ip", "-j", "link", "show", "cali" + box.id[:11]]).stdout
    )[0]
    assert (host_veth["mtu"], host_veth["address"]) == (1400, "ee:ee:ee:ee:ee:ee")
    assert (
        cni.host.exec(
            ["sysctl", "-n", f"net.ipv6.conf.{host_veth['ifname']}.proxy_ndp"]
        ).stdout.strip()
        == "1"
    )
    assert cni.exec("DEL", box, conf).exit_code == 0
    cni.assert_nothing_left(box, [address])


def test_mtu_from_felix_mtu_file(cni: CniRunner) -> None:
    """mtu absent: the veth takes the MTU Felix wrote; require_mtu_file without the file fails
    the ADD before anything is made."""
    box = cni.container("mtufile")
    conf = cni.conf(box, require_mtu_file=True)
    out = cni.exec("ADD", box, conf)
    assert (out.exit_code, out.error_code) == (1, 5), out
    assert out.doc is not None and "failed to read MTU file" in out.doc["msg"]
    cni.assert_nothing_left(box)
    cni.mtu_file.write_text("1410")
    out = cni.exec("ADD", box, conf)
    assert out.exit_code == 0, out
    inside = json.loads(cni.cluster.ns.exec(box.netns, ["ip", "-j", "link", "show", "eth0"]).stdout)
    host = json.loads(cni.host.exec(["ip", "-j", "link", "show", "cali" + box.id[:11]]).stdout)
    assert (inside[0]["mtu"], host[0]["mtu"]) == (1410, 1410)
    assert cni.exec("DEL", box, conf).exit_code == 0
    cni.assert_nothing_left(box, out.addresses())
