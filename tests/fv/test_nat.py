"""The nat table with real packets: floating IPs (DNAT, hairpin SNAT, the route BIRD would
advertise) and IP pools' natOutgoing (MASQUERADE to the host's address), IPv4 and IPv6.

The host's upstream namespace plays the outside world: it routes the floating IP range to
the host (standing in for what BGP would teach it) and records the source addresses it sees.
Each flow is also traced (`calicoctl policy trace`, from the datastore alone): its verdict
must be the kernel's, its translations (DNAT, SNAT, MASQUERADE) what the receivers saw, and
each NAT rule and deciding rule it names one whose kernel counter the packets moved.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from calico.model.policy import GlobalNetworkPolicy
from calico.testing.workloads import connects, serve

from .conftest import Cluster, FelixHost, wait_until
from .probes import UdpRecorder, send_udp_from
from .test_host_endpoints import static_neighbours
from .test_policy_matrix import missing_rules, rules_moved
from .test_policy_trace import FlowCheck
from .tracing import cli_trace, cli_trace_refused

pytestmark = pytest.mark.fv

HOST_V4, HOST_V6 = "198.18.255.1", "2001:db8:ff::1"  # the host's upstream-facing addresses
OUT_V4, OUT_V6 = "198.18.255.2", "2001:db8:ff::2"  # the outside world
FIP_V4, FIP_V6 = "198.18.7.1", "2001:db8:7::1"


def nats(*pairs: tuple[str, str]) -> dict[str, object]:
    return {"ipNATs": [{"internalIP": i, "externalIP": e} for i, e in pairs]}


Nat = tuple[str, str, str | None]  # type, original, translated


def nat_entries(trace: dict[str, Any]) -> list[Nat]:
    return [(n["type"], n["original"], n["translated"]) for h in trace["hops"] for n in h["nat"]]


def traced_udp(
    cluster: Cluster, host: FelixHost, flags: list[str], send: Callable[[], object]
) -> list[Nat]:
    """The translations of a UDP flow to port 9999 the trace must allow; the rules it
    names must be ones whose counters `send()` moved."""
    out = cli_trace(cluster, [*flags, "--protocol", "UDP", "--port", "9999"])
    assert out["verdict"] == "allow", out
    version = 6 if any(":" in f for f in flags) else 4
    for _ in range(3):  # a rule's counter can be read mid-apply under load: retry clean
        _, hit = rules_moved(host, version, send)
        if not missing_rules(out, hit):
            break
    assert not missing_rules(out, hit), missing_rules(out, hit)
    return nat_entries(out)


def test_floating_ips_reach_the_workload_hairpin_and_survive_tampering(
    cluster: Cluster, tmp_path: Path
) -> None:
    host = cluster.host("h1")
    # From the datastore (not Felix's environment), where the trace reads it too.
    cluster.apply({
        "kind": "FelixConfiguration", "metadata": {"name": "default"},
        "spec": {"floatingIPs": "Enabled"},
    })  # fmt: skip
    wl = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    cluster.add_endpoint(
        host, wl, "a", extra=nats(("198.19.0.1", FIP_V4), ("2001:db8:100::1", FIP_V6))
    )
    for address in (wl.ipv4, wl.ipv6):
        assert address is not None
        serve(cluster.ns, wl.netns, address, 8080)
    cluster.ns.exec(host.upstream, ["ip", "route", "add", "198.18.7.0/24", "via", HOST_V4])
    cluster.ns.exec(host.upstream, ["ip", "-6", "route", "add", "2001:db8:7::/64", "via", HOST_V6])
    host.start()
    host.wait_ready()

    for fip in (FIP_V4, FIP_V6):
        wait_until(
            lambda f=fip: connects(cluster.ns, host.upstream, "tcp", f, 8080), what=f"TCP to {fip}"
        )
    # The trace: DNAT in nat PREROUTING, then the workload's ingress policy.
    check = FlowCheck(cluster, host, {
        "out->fip": (host.upstream, OUT_V4, FIP_V4, "tcp", 8080),
        "out->fip v6": (host.upstream, OUT_V6, FIP_V6, "tcp", 8080),
        "hairpin": (wl.netns, "198.19.0.1", FIP_V4, "tcp", 8080),
        "hairpin v6": (wl.netns, "2001:db8:100::1", FIP_V6, "tcp", 8080),
    })  # fmt: skip
    check.agree({name: True for name in check.flows})
    assert nat_entries(check.traces["out->fip"]) == [("DNAT", FIP_V4, "198.19.0.1")]
    assert nat_entries(check.traces["out->fip v6"]) == [("DNAT", FIP_V6, "2001:db8:100::1")]
    assert nat_entries(check.traces["hairpin"]) == [
        ("DNAT", FIP_V4, "198.19.0.1"),
        ("SNAT", "198.19.0.1", FIP_V4),
    ]
    # The workload sees the outside client's own address (DNAT only, no SNAT).
    for fip, inside, outside in ((FIP_V4, wl.ipv4, OUT_V4), (FIP_V6, wl.ipv6, OUT_V6)):
        assert inside is not None
        seen = UdpRecorder(cluster.ns, wl.netns, inside, 9999, tmp_path / f"in{fip}.json")
        wait_until(
            lambda f=fip, o=outside, r=seen: _sent_and_seen(cluster, host.upstream, o, f, r, o),
            what=f"UDP to {fip} seen from {outside}",
        )
        assert traced_udp(
            cluster,
            host,
            ["--from-ip", outside, "--to-ip", fip],
            lambda f=fip, o=outside: send_udp_from(cluster.ns, host.upstream, o, f, 9999, "t"),
        ) == [("DNAT", fip, inside)]
        # Hairpin: the workload reaches itself through its floating IP and sees the packet
        # come from the floating IP, not from its own address.
        wait_until(
            lambda f=fip, i=inside, r=seen: _sent_and_seen(cluster, wl.netns, i, f, r, f),
            what=f"hairpin via {fip}",
        )
        assert traced_udp(
            cluster,
            host,
            ["--from", "default/a", "--to-ip", fip],
            lambda f=fip, i=inside: send_udp_from(cluster.ns, wl.netns, i, f, 9999, "t"),
        ) == [("DNAT", fip, inside), ("SNAT", inside, fip)]
    # The floating IPs are routed to the workload's interface (BIRD's kernel protocol
    # learns these and advertises those inside an IP pool).
    assert f"{FIP_V4} dev cali1a proto 80" in host.routes(4)
    assert f"{FIP_V6} dev cali1a proto 80" in host.routes(6)
    nat4 = "\n".join(host.cali_lines("nat", 4))
    assert f"-d {FIP_V4}/32 " in nat4 and "--to-destination 198.19.0.1" in nat4

    # Tampering with the nat table is repaired by the periodic refresh.
    host.exec(["iptables", "-t", "nat", "-F", "cali-fip-dnat"])
    wait_until(lambda: bool(host.chain("cali-fip-dnat", "nat", 4)), what="DNAT repaired")
    assert connects(cluster.ns, host.upstream, "tcp", FIP_V4, 8080)

    # Removing the mapping removes the DNAT and the route.
    cluster.add_endpoint(host, wl, "a")
    wait_until(lambda: FIP_V4 not in host.routes(4), what="floating IP route removed")
    assert not host.chain("cali-fip-dnat", "nat", 4) and not host.chain("cali-fip-dnat", "nat", 6)
    assert not connects(cluster.ns, host.upstream, "tcp", FIP_V4, 8080)
    # No workload's floating IP any more: an external address, nothing to trace.
    flags = ["--from-ip", OUT_V4, "--to-ip", FIP_V4, "--protocol", "TCP", "--port", "8080"]
    assert "neither end is a workload endpoint" in cli_trace_refused(cluster, flags)


def test_prednat_policy_sees_the_floating_ip_and_forward_policy_the_workload(
    cluster: Cluster,
) -> None:
    """A host endpoint on the uplink: its preDNAT policy (mangle, before nat PREROUTING)
    matches the floating IP, its applyOnForward policy (filter, after the DNAT) the
    workload's own address. Real packets and the trace must agree on which decides."""
    host = cluster.host("h1")
    up = host.upstream
    cluster.apply({
        "kind": "FelixConfiguration", "metadata": {"name": "default"},
        "spec": {"floatingIPs": "Enabled"},
    })  # fmt: skip
    wl = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    cluster.add_endpoint(
        host, wl, "a", extra=nats(("198.19.0.1", FIP_V4), ("2001:db8:100::1", FIP_V6))
    )
    for address in ("198.19.0.1", "2001:db8:100::1"):
        for port in (8080, 8081, 8082):
            serve(cluster.ns, wl.netns, address, port)
    cluster.ns.exec(up, ["ip", "route", "add", "198.18.7.0/24", "via", HOST_V4])
    cluster.ns.exec(up, ["ip", "-6", "route", "add", "2001:db8:7::/64", "via", HOST_V6])
    # Host endpoint policy would drop neighbour discovery to the host.
    static_neighbours(cluster, host.netns, "eth1", up, "eth0", OUT_V6)
    static_neighbours(cluster, up, "eth0", host.netns, "eth1", HOST_V6)
    host.start()
    host.wait_ready()
    cluster.apply({
        "kind": "HostEndpoint", "metadata": {"name": "h1-eth1", "labels": {"hep": "uplink"}},
        "spec": {"node": "h1", "interfaceName": "eth1", "expectedIPs": [HOST_V4, HOST_V6]},
    })  # fmt: skip
    # Each denies 8080 to the address it sees, 8081 to the one it does not.
    for name, kind, seen, unseen in (
        ("to-fip", "preDNAT", FIP_V4, "198.19.0.1"),
        ("to-wl", "applyOnForward", "198.19.0.1", FIP_V4),
    ):
        cluster.apply({
            "kind": "GlobalNetworkPolicy", "metadata": {"name": name},
            "spec": {"selector": "hep == 'uplink'", "applyOnForward": True, kind: True,
                     "types": ["Ingress"], "ingress": [
                {"action": "Deny", "protocol": "TCP",
                 "destination": {"nets": [f"{seen}/32"], "ports": [8080]}},
                {"action": "Deny", "protocol": "TCP",
                 "destination": {"nets": [f"{unseen}/32"], "ports": [8081]}},
                *([{"action": "Allow"}] if kind == "applyOnForward" else []),
            ]},
        })  # fmt: skip
    check = FlowCheck(cluster, host, {
        "8080": (up, OUT_V4, FIP_V4, "tcp", 8080),
        "8081": (up, OUT_V4, FIP_V4, "tcp", 8081),
        "8082": (up, OUT_V4, FIP_V4, "tcp", 8082),
        "8080 v6": (up, OUT_V6, FIP_V6, "tcp", 8080),
    })  # fmt: skip
    got = check.agree({"8080": False, "8081": True, "8082": True, "8080 v6": True})
    # Both policies deny 8080: preDNAT, in mangle, comes first (and sees the floating IP).
    assert (got["8080"]["policy"], got["8080"]["rule_index"], got["8080"]["table"]) == (
        "to-fip",
        0,
        "mangle",
    )
    # 8081 names the address neither sees: both let it through.
    (hop,) = check.traces["8081"]["hops"]
    seen = {(e["endpoint"], e["table"]): e["decided_by"] for e in hop["endpoints"]}
    assert seen["host endpoint h1-eth1", "mangle"] is None  # preDNAT: no rule matched
    forward = seen["host endpoint h1-eth1", "filter"]
    assert (forward["policy"], forward["rule_index"]) == ("to-wl", 2)
    # Dropped in mangle, 8080 never reached nat PREROUTING: no translation; the rest were.
    assert nat_entries(check.traces["8080"]) == []
    for name in ("8081", "8082", "8080 v6"):
        assert [n[0] for n in nat_entries(check.traces[name])] == ["DNAT"], name
    # Without the preDNAT policy, the forward policy decides 8080, on the workload's address.
    cluster.delete(GlobalNetworkPolicy, "to-fip")
    got = check.agree({"8080": False, "8080 v6": True})
    assert (got["8080"]["policy"], got["8080"]["rule_index"], got["8080"]["table"]) == (
        "to-wl",
        0,
        "filter",
    )


def _sent_and_seen(
    cluster: Cluster, where: str, src: str, dst: str, recorder: UdpRecorder, expect: str
) -> bool:
    payload = f"{src}->{dst}"
    send_udp_from(cluster.ns, where, src, dst, 9999, payload)
    return recorder.sources(payload) == {expect}


def test_nat_outgoing_masquerades_only_pools_that_ask_for_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    host: FelixHost = cluster.host("h1")
    masq = host.add_workload("cali1m", "198.19.0.1", "2001:db8:100::1")
    plain = host.add_workload("cali1p", "198.19.1.1", "2001:db8:101::1")
    cluster.add_endpoint(host, masq, "masq")
    cluster.add_endpoint(host, plain, "plain")
    for name, cidr, nat_outgoing in (
        ("masq-v4", "198.19.0.0/24", True),
        ("masq-v6", "2001:db8:100::/64", True),
        ("plain-v4", "198.19.1.0/24", False),
        ("plain-v6", "2001:db8:101::/64", False),
    ):
        cluster.apply({
            "kind": "IPPool", "metadata": {"name": name},
            "spec": {"cidr": cidr, "natOutgoing": nat_outgoing},
        })  # fmt: skip
    outside = {
        4: UdpRecorder(cluster.ns, host.upstream, OUT_V4, 9999, tmp_path / "out4.json"),
        6: UdpRecorder(cluster.ns, host.upstream, OUT_V6, 9999, tmp_path / "out6.json"),
    }
    in_plain = UdpRecorder(cluster.ns, plain.netns, "198.19.1.1", 9999, tmp_path / "in.json")
    host.start()
    host.wait_ready()

    tries = iter(range(1_000_000))

    def seen(where: str, src: str, dst: str, recorder: UdpRecorder, expect: str) -> bool:
        payload = f"{src}->{dst}#{next(tries)}"  # fresh: earlier sends had other sources
        send_udp_from(cluster.ns, where, src, dst, 9999, payload)
        return recorder.sources(payload) == {expect}

    def traced(pod: str, where: str, src: str, dst: str) -> list[Nat]:
        send = lambda: send_udp_from(cluster.ns, where, src, dst, 9999, "t")  # noqa: E731
        return traced_udp(cluster, host, ["--from", f"default/{pod}", "--to-ip", dst], send)

    # From a natOutgoing pool to outside every pool: the far side sees the host's address.
    wait_until(lambda: seen(masq.netns, "198.19.0.1", OUT_V4, outside[4], HOST_V4), what="v4")
    wait_until(lambda: seen(masq.netns, "2001:db8:100::1", OUT_V6, outside[6], HOST_V6), what="v6")
    # The trace says MASQUERADE (to an address it cannot know: the outgoing interface's).
    assert traced("masq", masq.netns, "198.19.0.1", OUT_V4) == [("MASQUERADE", "198.19.0.1", None)]
    assert traced("masq", masq.netns, "2001:db8:100::1", OUT_V6) == [
        ("MASQUERADE", "2001:db8:100::1", None)
    ]
    # From a pool without natOutgoing: the workload's own address.
    wait_until(lambda: seen(plain.netns, "198.19.1.1", OUT_V4, outside[4], "198.19.1.1"), what="")
    wait_until(lambda: seen(plain.netns, "2001:db8:101::1", OUT_V6, outside[6], "2001:db8:101::1"))
    assert traced("plain", plain.netns, "198.19.1.1", OUT_V4) == []
    assert traced("plain", plain.netns, "2001:db8:101::1", OUT_V6) == []
    # Inside the pools nothing is translated, natOutgoing or not.
    wait_until(lambda: seen(masq.netns, "198.19.0.1", "198.19.1.1", in_plain, "198.19.0.1"))
    assert traced("masq", masq.netns, "198.19.0.1", "198.19.1.1") == []
    assert any(
        "-j MASQUERADE --random-fully" in ln for ln in host.chain("cali-nat-outgoing", "nat")
    )
    sets = host.exec(["ipset", "list", "-n"]).stdout.split()
    assert {"cali40masq-ipam-pools", "cali40all-ipam-pools", "cali60masq-ipam-pools"} <= set(sets)

    # Turning natOutgoing off takes effect without a restart; a foreign NAT rule is kept.
    host.exec(
        ["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "198.18.250.0/24", "-j", "RETURN"]
    )
    cluster.apply({
        "kind": "IPPool", "metadata": {"name": "masq-v4"},
        "spec": {"cidr": "198.19.0.0/24", "natOutgoing": False},
    })  # fmt: skip
    wait_until(lambda: seen(masq.netns, "198.19.0.1", OUT_V4, outside[4], "198.19.0.1"), what="off")
    assert traced("masq", masq.netns, "198.19.0.1", OUT_V4) == []
    assert traced("masq", masq.netns, "2001:db8:100::1", OUT_V6) == [
        ("MASQUERADE", "2001:db8:100::1", None)
    ]
    assert not host.chain("cali-nat-outgoing", "nat", 4) and host.chain(
        "cali-nat-outgoing", "nat", 6
    )
    assert host.chain("POSTROUTING", "nat", 4)[-1].endswith("-s 198.18.250.0/24 -j RETURN")
