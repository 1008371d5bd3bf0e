"""The lab's pure pieces: BIRD session parsing, FRR config, status and matrix text."""

from __future__ import annotations

from click.testing import CliRunner

from calico.cli.main import cli
from calico.lab.frr import Neighbor, bgpd_config
from calico.lab.probe import probe_argv
from calico.lab.report import Matrix, format_matrix, format_status


def test_frr_config_peers_each_host_in_its_address_family() -> None:
    text = bgpd_config("border", 65000, "198.18.0.1",
                       [Neighbor("198.18.0.11", 64512), Neighbor("2001:db8::11", 64513)],
                       ["198.18.200.0/24"])  # fmt: skip
    assert "router bgp 65000" in text and " bgp router-id 198.18.0.1" in text
    assert " neighbor 198.18.0.11 remote-as 64512" in text
    assert " neighbor 2001:db8::11 remote-as 64513" in text
    v4, v6 = text.split(" address-family ipv4 unicast")[1].split(" address-family ipv6 unicast")
    assert "network 198.18.200.0/24" in v4 and "neighbor 198.18.0.11 activate" in v4
    assert "neighbor 2001:db8::11 activate" in v6 and "198.18" not in v6


def test_matrix_and_status_text() -> None:
    cells = {("a", "b"): True, ("b", "a"): False}
    text = format_matrix(Matrix(["a", "b"], ["a", "b"], cells, "(tcp)"))
    assert text.splitlines() == [
        "from \\ to (tcp)  a   b",
        "a                .   ok",
        "b                --  .",
    ]
    doc = {
        "name": "x", "up": True, "etcd": "http://e", "state_dir": "/s",
        "hosts": [{"name": "h1", "ipv4": "198.18.0.11", "ipv6": None, "node": True,
                   "felix": True, "bird": False,
                   "bgp": [{"peer": "Mesh_1", "state": "up", "info": "Established"},
                           {"peer": "Mesh_2", "state": "start", "info": "Active"}]}],
        "workloads": [], "border": {"name": "r", "bgp": {"198.18.0.11": "Established"}},
    }  # fmt: skip
    status = format_status(doc)
    assert "1/2 Established; Mesh_2: start Active" in status
    assert "DOWN" in status and "border router r: 1/1 BGP sessions Established" in status


def test_probe_commands() -> None:
    assert probe_argv("icmp", "198.19.0.1", None, 1.0)[:2] == ["ping", "-n"]
    assert probe_argv("udp", "2001:db8::1", 53, 0.5)[-4:] == ["udp", "2001:db8::1", "53", "0.5"]


def test_cli_has_node_and_lab_commands() -> None:
    out = CliRunner().invoke(cli, ["lab", "--help"]).output
    for command in ("up", "down", "status", "exec", "probe", "matrix"):
        assert command in out
    assert "run" in CliRunner().invoke(cli, ["node", "--help"]).output
    bad = CliRunner().invoke(cli, ["node", "run", "--ip", "bogus"], env={"NODENAME": "n1"})
    assert bad.exit_code == 1 and "IP: 'bogus' is not an IPv4 address" in bad.output


def test_frr_config_for_a_route_reflecting_tor() -> None:
    text = bgpd_config("tor1", 65001, "198.18.1.1",
                       [Neighbor("198.18.1.11", 65001, rr_client=True, next_hop_self=True),
                        Neighbor("198.18.0.1", 65100)],
                       ["198.18.1.0/24"], timers=(3, 9))  # fmt: skip
    assert " timers bgp 3 9" in text and "  network 198.18.1.0/24" in text
    assert "  neighbor 198.18.1.11 route-reflector-client" in text
    assert "  neighbor 198.18.1.11 next-hop-self" in text
    assert "198.18.0.1 route-reflector-client" not in text
    assert "198.18.0.1 next-hop-self" not in text
