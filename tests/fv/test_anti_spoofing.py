"""Anti-spoofing: a workload cannot send from an address it does not own, unless its
endpoint lists that prefix in allowSpoofedSourcePrefixes. IPv4 and IPv6, real packets, each
verdict also traced (`calicoctl policy trace --from W --from-ip ADDRESS`): the trace must
agree, and name as the decider a rule whose counter the packets moved (the reverse-path
drop in raw for a spoofed source)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import Cluster, FelixHost, wait_until
from .probes import UdpRecorder, send_udp_from
from .test_policy_matrix import missing_rules, rules_moved
from .tracing import cli_trace

pytestmark = pytest.mark.fv


def spoof_traced(
    cluster: Cluster, host: FelixHost, src: str, dst: str, send: Callable[[], object]
) -> dict[str, Any]:
    """The trace of workload a sending UDP to dst:9999 from `src`, each rule it names one
    whose counter `send()` moved; what decided (its first denying hop, else its last)."""
    flags = ["--from", "default/a", "--from-ip", src, "--to-ip", dst, "--protocol", "UDP"]
    out = cli_trace(cluster, [*flags, "--port", "9999"])
    for _ in range(3):  # a counter can be read mid-apply under load: retry clean
        _, hit = rules_moved(host, 6 if ":" in src else 4, send)
        if not missing_rules(out, hit):
            break
    assert not missing_rules(out, hit), missing_rules(out, hit)
    hop = next((h for h in out["hops"] if h["verdict"] == "deny"), out["hops"][-1])
    decided: dict[str, Any] = {"verdict": out["verdict"], **(hop["decided_by"] or {})}
    return decided


def assert_spoof_dropped(decided: dict[str, Any]) -> None:
    assert decided["verdict"] == "deny", decided
    assert (decided["what"], decided["table"], decided["chain"]) == (
        "anti-spoofing",
        "raw",
        "cali-PREROUTING",
    ), decided


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

    def send(src: str) -> Callable[[], object]:
        return lambda: send_udp_from(cluster.ns, a.netns, src, dst, 9999, "traced")

    assert_spoof_dropped(spoof_traced(cluster, host, spoofed, dst, send(spoofed)))
    assert spoof_traced(cluster, host, own, dst, send(own))["verdict"] == "allow"

    # Allow the prefix on the sender's endpoint: now the spoofed source gets through.
    cluster.add_endpoint(host, a, "a", extra={"allowSpoofedSourcePrefixes": [prefix]})
    wait_until(lambda: delivered(spoofed, "allowed"), what="allowed spoofed source delivered")
    assert spoof_traced(cluster, host, spoofed, dst, send(spoofed))["verdict"] == "allow"

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
    assert_spoof_dropped(spoof_traced(cluster, host, spoofed, dst, send(spoofed)))
