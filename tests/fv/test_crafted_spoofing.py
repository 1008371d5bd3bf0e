"""Spoofing with hand-made packets (raw sockets) from a workload, IPv4 and IPv6.

test_anti_spoofing.py covers a workload that gives itself a foreign address; here the packets
are built by hand: a source that is another workload's address is dropped (0 delivered), a
source inside the endpoint's allowSpoofedSourcePrefixes passes, and a workload that answers
ARP/NDP for another workload's address changes nothing: the other stays reachable and the
host's neighbour entry for it keeps its MAC. Each crafted flow's verdict is also traced
(`calicoctl policy trace --from W --from-ip ADDRESS`), as in test_anti_spoofing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from calico.testing.workloads import Workload, ping

from .conftest import Cluster, FelixHost, wait_until
from .crafted import claim_neighbour, send_raw_udp
from .probes import UdpRecorder
from .test_anti_spoofing import assert_spoof_dropped, spoof_traced

pytestmark = pytest.mark.fv
V4 = ("198.19.0.1", "198.19.0.2", "198.19.0.3")
V6 = ("2001:db8:100::1", "2001:db8:100::2", "2001:db8:100::3")


def three_workloads(cluster: Cluster) -> tuple[FelixHost, list[Workload]]:
    host = cluster.host("h1")
    wls = [host.add_workload(f"cali1{n}", v4, v6) for n, v4, v6 in zip("abc", V4, V6, strict=True)]
    for name, wl in zip("abc", wls, strict=True):
        cluster.add_endpoint(host, wl, name)
    return host, wls


@pytest.mark.parametrize("addrs", [V4, V6], ids=["ipv4", "ipv6"])
def test_crafted_source_of_another_workload_dropped_allowed_prefix_passes(
    cluster: Cluster, tmp_path: Path, addrs: tuple[str, str, str]
) -> None:
    host, (a, _, c) = three_workloads(cluster)
    own, victim, dst = addrs
    allowed, prefix = (
        ("198.19.0.99", "198.19.0.96/30")
        if ":" not in own
        else ("2001:db8:100::99", "2001:db8:100::98/127")
    )
    recorder = UdpRecorder(cluster.ns, c.netns, dst, 9999, tmp_path / "seen.json")
    host.start()
    host.wait_ready()

    def delivered(src: str, payload: str) -> bool:
        send_raw_udp(cluster.ns, a.netns, src, dst, 9999, payload)
        return src in recorder.sources(payload)

    # Genuine crafted packets arrive (the raw path works); by then the spoofed ones sent
    # before them have arrived or been dropped.
    for round_ in range(3):
        send_raw_udp(cluster.ns, a.netns, victim, dst, 9999, f"spoof{round_}", count=10)
        send_raw_udp(cluster.ns, a.netns, allowed, dst, 9999, f"spoof{round_}", count=10)
        wait_until(lambda r=round_: delivered(own, f"real{r}"), what="genuine crafted UDP")
    assert (
        recorder.sources("spoof0") | recorder.sources("spoof1") | recorder.sources("spoof2")
        == set()
    )

    def send(src: str) -> Callable[[], object]:
        return lambda: send_raw_udp(cluster.ns, a.netns, src, dst, 9999, "traced", count=10)

    for src in (victim, allowed):
        assert_spoof_dropped(spoof_traced(cluster, host, src, dst, send(src)))
    assert spoof_traced(cluster, host, own, dst, send(own))["verdict"] == "allow"

    cluster.add_endpoint(host, a, "a", extra={"allowSpoofedSourcePrefixes": [prefix]})
    wait_until(lambda: delivered(allowed, "allowed"), what="allowed spoofed source delivered")
    assert spoof_traced(cluster, host, allowed, dst, send(allowed))["verdict"] == "allow"
    # The allowance covers its prefix only, not another workload's address.
    for round_ in range(3):
        send_raw_udp(cluster.ns, a.netns, victim, dst, 9999, f"still{round_}", count=10)
        wait_until(lambda r=round_: delivered(own, f"real-again{r}"), what="genuine UDP")
    assert not any(recorder.sources(f"still{r}") for r in range(3)), recorder.read()
    assert_spoof_dropped(spoof_traced(cluster, host, victim, dst, send(victim)))


def neighbour_macs(host: FelixHost, addr: str) -> dict[str, str]:
    """The host's neighbour entries for `addr`: interface -> MAC."""
    out = host.exec(["ip", "-6" if ":" in addr else "-4", "neigh", "show", addr]).stdout
    entries = {}
    for line in out.splitlines():
        words = line.split()
        if "dev" in words and "lladdr" in words:
            entries[words[words.index("dev") + 1]] = words[words.index("lladdr") + 1]
    return entries


def test_claiming_another_workloads_address_by_arp_or_ndp_has_no_effect(cluster: Cluster) -> None:
    host, (a, b, c) = three_workloads(cluster)
    host.start()
    host.wait_ready()
    for addr in (V4[1], V6[1]):
        wait_until(lambda d=addr: ping(cluster.ns, c.netns, d), what=f"c reaches b at {addr}")
        assert ping(cluster.ns, host.netns, addr)
        assert neighbour_macs(host, addr).get(b.host_iface) == b.mac

    claim_neighbour(cluster.ns, a.netns, V4[1], V4[0], count=50)
    claim_neighbour(cluster.ns, a.netns, V6[1], V6[0], count=50)

    for addr in (V4[1], V6[1]):
        assert ping(cluster.ns, c.netns, addr), f"c lost b at {addr}"
        assert ping(cluster.ns, host.netns, addr), f"host lost b at {addr}"
        macs = neighbour_macs(host, addr)
        assert macs.get(b.host_iface) == b.mac, macs
        # Not on b's interface, nor anywhere else the host would use for b.
        assert a.mac not in macs.values(), macs
