"""Anti-spoofing: a workload cannot send from an address it does not own, unless its
endpoint lists that prefix in allowSpoofedSourcePrefixes. IPv4 and IPv6, real packets."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Cluster, wait_until
from .probes import UdpRecorder, send_udp_from

pytestmark = pytest.mark.fv


@pytest.mark.parametrize(
    ("own", "spoofed", "dst", "prefix"),
    [
        ("198.19.0.1", "198.19.0.99", "198.19.0.2", "198.19.0.96/30"),
        ("2001:db8:100::1", "2001:db8:100::99", "2001:db8:100::2", "2001:db8:100::98/127"),
    ],
    ids=["ipv4", "ipv6"],
)
def test_spoofed_source_dropped_unless_allowed(
    cluster: Cluster, tmp_path: Path, own: str, spoofed: str, dst: str, prefix: str
) -> None:
    host = cluster.host("h1")
    a = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    b = host.add_workload("cali1b", "198.19.0.2", "2001:db8:100::2")
    cluster.add_endpoint(host, a, "a")
    cluster.add_endpoint(host, b, "b")
    # The workload gives itself an address that is not its own.
    length = "128" if ":" in spoofed else "32"
    cluster.ns.exec(a.netns, ["ip", "addr", "add", f"{spoofed}/{length}", "dev", "eth0", "nodad"])
    recorder = UdpRecorder(cluster.ns, b.netns, dst, 9999, tmp_path / "seen.json")
    host.start()
    host.wait_ready()

    def delivered(src: str, payload: str) -> bool:
        send_udp_from(cluster.ns, a.netns, src, dst, 9999, payload)
        return src in recorder.sources(payload)

    # Genuine traffic arrives; by the time it has, the spoofed packets sent before it have
    # either arrived too or been dropped.
    for round_ in range(3):
        send_udp_from(cluster.ns, a.netns, spoofed, dst, 9999, f"spoof{round_}")
        wait_until(lambda r=round_: delivered(own, f"real{r}"), what="genuine UDP delivered")
    assert not any(recorder.sources(f"spoof{r}") for r in range(3)), recorder.read()

    # Allow the prefix on the sender's endpoint: now the spoofed source gets through.
    cluster.add_endpoint(host, a, "a", extra={"allowSpoofedSourcePrefixes": [prefix]})
    wait_until(lambda: delivered(spoofed, "allowed"), what="allowed spoofed source delivered")

    # Removing the allowance closes it again.
    cluster.add_endpoint(host, a, "a")
    version = 6 if ":" in spoofed else 4
    wait_until(
        lambda: not host.chain("cali-rpf-skip", "raw", version), what="cali-rpf-skip emptied"
    )
    for round_ in range(3):
        send_udp_from(cluster.ns, a.netns, spoofed, dst, 9999, f"again{round_}")
        wait_until(lambda r=round_: delivered(own, f"real-again{r}"), what="genuine UDP")
    assert not any(recorder.sources(f"again{r}") for r in range(3)), recorder.read()
