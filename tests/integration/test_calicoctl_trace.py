"""calicoctl policy trace against a real etcd: both hops across two hosts, text and JSON,
exit 0 for allow and deny, exit 1 naming the flag for every bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from calico import programs
from calico.ctl.main import cli
from calico.datastore.etcd import EtcdBackend
from calico.model.keys import ResourceKey
from calico.model.policy import GlobalNetworkPolicy
from calico.model.status_keys import host_endpoint_interfaces_key, rules_settings_key
from calico.rules.config import RulesConfig
from calico.testing.etcd_server import EtcdServer

pytestmark = pytest.mark.integration

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")
MANIFEST = """
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.shop}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
  labelsToApply: {pcns.projectcalico.org/name: shop}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {namespace: shop, labels: {app: web}}
spec: {node: host-1, orchestrator: k8s, pod: web-0, endpoint: eth0, interfaceName: caliweb0,
       ipNetworks: [198.19.0.1/32, "2001:db8:100::1/128"], profiles: [kns.shop]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {namespace: shop, labels: {app: db}}
spec: {node: host-2, orchestrator: k8s, pod: db-0, endpoint: eth0, interfaceName: calidb0,
       ipNetworks: [198.19.0.2/32], profiles: [kns.shop]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: shop}
spec:
  selector: app == 'db'
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'web'}, destination: {ports: [5432]}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: host-2}
spec: {bgp: {ipv4Address: 198.18.0.12/24}}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: host-3-eth0}
spec: {node: host-3, interfaceName: eth0, expectedIPs: [198.18.0.13]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: host-4-any}
spec: {node: host-4, expectedIPs: [198.18.0.14]}
"""


@pytest.fixture
def ctl(etcd_server: EtcdServer) -> CliRunner:
    runner = CliRunner(env={"ETCD_ENDPOINTS": etcd_server.endpoint, "ETCD_CA_CERT_FILE": ""})
    result = runner.invoke(cli, ["apply", "-f", "-"], input=MANIFEST)
    assert result.exit_code == 0, result.output
    return runner


def trace(runner: CliRunner, *flags: str, ok: bool = True) -> Result:
    result = runner.invoke(cli, ["policy", "trace", *flags])
    assert (result.exit_code == 0) == ok, (flags, result.output)
    return result


def test_both_hops_across_hosts(ctl: CliRunner) -> None:
    flags = ("--from", "shop/web-0", "--to", "shop/db-0", "--protocol", "TCP")
    out = json.loads(trace(ctl, *flags, "--port", "5432", "-o", "json").output)
    assert out["verdict"] == "allow"
    hops = [(h["host"], h["direction"], h["verdict"]) for h in out["hops"]]
    assert hops == [("host-1", "egress", "allow"), ("host-2", "ingress", "allow")]
    assert out["hops"][0]["decided_by"]["profile"] == "kns.shop"
    ingress = out["hops"][1]["decided_by"]
    assert (ingress["tier"], ingress["policy"], ingress["rule_index"], ingress["action"]) == (
        "default",
        "shop/db-ingress",
        0,
        "Allow",
    )
    denied = trace(ctl, *flags, "--port", "22").output  # a deny still exits 0
    assert denied.splitlines()[0].endswith(": DENY")
    assert "ingress on host-2: deny (end of tier default: Deny)" in denied
    assert "policy shop/db-ingress: no rule matched" in denied
    back = trace(ctl, "--from", "shop/db-0", "--to", "shop/web-0", "--protocol", "ICMP").output
    assert back.splitlines()[0].endswith(": ALLOW")
    assert "    tier default: no policy selects the endpoint (tier skipped)" in back.splitlines()


def test_addresses_and_external_ends(ctl: CliRunner) -> None:
    flags = ("--from-ip", "192.0.2.9", "--to-ip", "198.19.0.2", "--protocol", "tcp")
    out = json.loads(trace(ctl, *flags, "--port", "5432", "-o", "json").output)
    assert out["verdict"] == "deny"  # the policy allows only web
    assert [h["direction"] for h in out["hops"]] == ["ingress"]  # external: no egress hop
    six = ("--from", "shop/web-0", "--to-ip", "2001:db8::9", "--protocol", "ICMPv6")
    assert json.loads(trace(ctl, *six, "-o", "json").output)["verdict"] == "allow"


def test_host_ends(ctl: CliRunner) -> None:
    """A Node's address and a host endpoint's expected IP are the hosts themselves, by
    address or by the host's name."""
    flags = ("--from", "shop/web-0", "--to-ip", "198.18.0.12", "--protocol", "ICMP")
    out = json.loads(trace(ctl, *flags, "-o", "json").output)
    assert out["verdict"] == "allow"  # host-2 has no host endpoint: not policed
    assert [(h["host"], h["direction"]) for h in out["hops"]] == [
        ("host-1", "egress"),
        ("host-2", "ingress"),
    ]
    by_name = ("--from", "shop/web-0", "--to-host", "host-2", "--protocol", "ICMP", "-o", "json")
    assert json.loads(trace(ctl, *by_name).output) == out  # its Node's BGP address
    text = trace(ctl, "--from-host", "host-3", "--to", "shop/db-0", "--protocol", "ICMP")
    lines = text.output.splitlines()
    assert lines[0].startswith("host host-3 (198.18.0.13) -> shop/"), lines
    assert lines[1].startswith("egress on host-3: deny"), lines  # its endpoint: no policy


UNTRACKED_IN = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked-in}
spec:
  selector: all()
  doNotTrack: true
  applyOnForward: true
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]
"""


def test_untracked_packet_with_a_tracked_reply_is_refused(ctl: CliRunner) -> None:
    """doNotTrack lets the packet in untracked but does not untrack its reply: what
    conntrack makes of that reply is not modelled, so the trace refuses, not guesses."""
    assert ctl.invoke(cli, ["apply", "-f", "-"], input=UNTRACKED_IN).exit_code == 0
    flags = ("--from-ip", "192.0.2.9", "--to-ip", "198.18.0.13", "--protocol", "TCP")
    result = trace(ctl, *flags, "--port", "8080", ok=False)
    assert result.exit_code == 1
    assert result.stderr.startswith("cannot trace this flow: untracked policy let"), result.stderr
    assert "deny" in trace(ctl, *flags, "--port", "8081").output.splitlines()[0].lower()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--from", "shop/nope", "--to", "shop/db-0", "--protocol", "TCP", "--port", "1"),
         "--from: no workload endpoint shop/nope"),
        (("--from", "web-0", "--to", "shop/db-0", "--protocol", "TCP", "--port", "1"),
         "--from: 'web-0' is not NAMESPACE/WORKLOAD"),
        (("--from-ip", "1.2.3", "--to", "shop/db-0", "--protocol", "TCP", "--port", "1"),
         "--from-ip: '1.2.3' is not an IP address"),
        (("--from", "shop/web-0", "--to", "shop/db-0", "--protocol", "GRE"),
         "--protocol 'GRE': expected one of"),
        (("--from", "shop/web-0", "--to", "shop/db-0", "--protocol", "TCP"),
         "--port: TCP needs a destination port 1-65535"),
        (("--from", "shop/web-0", "--to", "shop/db-0", "--protocol", "ICMP", "--port", "80"),
         "--port: ICMP has no ports"),
        (("--from", "shop/web-0", "--to-ip", "2001:db8::9", "--protocol", "ICMP"),
         "--protocol ICMP: not an IPv6 protocol"),
        (("--from", "shop/db-0", "--to-ip", "2001:db8::9", "--protocol", "ICMPv6"),
         "--from: workload endpoint shop/db-0 has no IPv6 address"),
        (("--from-ip", "192.0.2.1", "--to-ip", "192.0.2.2", "--protocol", "ICMP"),
         "--from/--to: neither end is a workload endpoint"),
        (("--from-ip", "198.18.0.13", "--to-host", "host-3", "--protocol", "ICMP"),
         "--from/--to: both ends are host host-3"),
        (("--from-host", "host-9", "--to", "shop/web-0", "--protocol", "ICMP"),
         "--from-host: no address of host host-9"),
        (("--from-host", "host-2", "--to", "shop/web-0", "--protocol", "ICMPv6"),
         "--from-host: host host-2 has no IPv6 address"),
        (("--from-host", "host-2", "--from-ip", "198.18.0.12", "--to", "shop/web-0",
          "--protocol", "ICMP"), "--from: give exactly one of"),
        (("--from", "shop/web-0", "--to-ip", "198.18.0.12", "--protocol", "UDP",
          "--port", "4789"), "--port: 4789 is VXLAN's to or from a host"),
        (("--from-ip", "198.18.0.14", "--to", "shop/web-0", "--protocol", "ICMP"),
         "--from-ip: host host-4's host endpoint host-4-any has no interfaceName"),
        (("--from", "shop/web-0", "--to", "shop/db-0", "--to-ip", "198.19.0.2",
          "--protocol", "ICMP"), "--to: give exactly one of"),
        (("--from", "shop/db-0", "--from-ip", "2001:db8:100::9", "--to-ip", "2001:db8::9",
          "--protocol", "ICMPv6"), "--from: workload endpoint shop/db-0 has no IPv6 address"),
    ],
)  # fmt: skip
def test_errors_name_the_flag(ctl: CliRunner, flags: tuple[str, ...], message: str) -> None:
    result = trace(ctl, *flags, ok=False)
    assert result.exit_code == 1
    assert result.stderr.startswith(message), result.stderr


def test_real_binary_exit_codes(ctl: CliRunner, etcd_server: EtcdServer) -> None:
    env = {"ETCD_ENDPOINTS": etcd_server.endpoint, "PATH": "/usr/bin:/bin"}
    base = [CALICOCTL, "policy", "trace", "--from", "shop/web-0", "--to", "shop/db-0"]
    for port, verdict in (("5432", "allow"), ("22", "deny")):
        proc = programs.run([*base, "--protocol", "TCP", "--port", port, "-o", "json"], env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["verdict"] == verdict
    proc = programs.run([*base, "--protocol", "TCP"], env=env)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith("--port:")


TAP_WORKLOADS = """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {interfacePrefix: tap}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {namespace: vms, labels: {app: vm}}
spec: {node: host-3, orchestrator: openstack, workload: vm-a, endpoint: eth0,
       interfaceName: tapvma, ipNetworks: [198.19.1.1/32], profiles: [projectcalico-default-allow]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {namespace: vms, labels: {app: vm}}
spec: {node: host-3, orchestrator: openstack, workload: vm-b, endpoint: eth0,
       interfaceName: tapvmb, ipNetworks: [198.19.1.2/32], profiles: [projectcalico-default-allow]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: no-ssh}
spec:
  selector: app == 'vm'
  ingress: [{action: Deny, protocol: TCP, destination: {ports: [22]}}, {action: Allow}]
"""


def test_felix_settings_from_the_datastore(ctl: CliRunner) -> None:
    """interfacePrefix tap: the workloads' chains are dispatched on tap+, as that Felix
    renders them (with the default cali prefix the packet would miss every workload chain)."""
    assert ctl.invoke(cli, ["apply", "-f", "-"], input=TAP_WORKLOADS).exit_code == 0
    flags = ("--from", "vms/vm-a", "--to", "vms/vm-b", "--protocol", "TCP", "-o", "json")
    out = json.loads(trace(ctl, *flags, "--port", "22").output)
    assert out["verdict"] == "deny"
    assert out["hops"][1]["decided_by"]["policy"] == "no-ssh"
    assert out["hops"][1]["endpoints"][0]["chain"] == "cali-tw-tapvmb"
    assert json.loads(trace(ctl, *flags, "--port", "80").output)["verdict"] == "allow"


FLOATING = """
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {namespace: shop, labels: {app: front}}
spec: {node: host-1, orchestrator: k8s, pod: front-0, endpoint: eth0, interfaceName: califront0,
       ipNetworks: [198.19.0.5/32], profiles: [kns.shop],
       ipNATs: [{internalIP: 198.19.0.5, externalIP: 198.18.7.1}]}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: shop-pool}
spec: {cidr: 198.19.0.0/24, natOutgoing: true}
"""
FLOATING_IPS_ON = """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {floatingIPs: Enabled}
"""


def test_floating_ips_and_nat_outgoing_from_the_datastore(ctl: CliRunner) -> None:
    """A floating IP is traced to its workload through the DNAT once FloatingIPs is Enabled
    in the datastore (refused before: no translation, the packet never gets there); a pool's
    natOutgoing shows as MASQUERADE."""
    assert ctl.invoke(cli, ["apply", "-f", "-"], input=FLOATING).exit_code == 0
    flags = ("--from-ip", "192.0.2.9", "--to-ip", "198.18.7.1", "--protocol", "TCP", "--port", "80")
    refused = trace(ctl, *flags, ok=False)
    assert refused.stderr.startswith("cannot trace this flow: 198.18.7.1 is a NAT mapping"), (
        refused.stderr
    )
    assert ctl.invoke(cli, ["apply", "-f", "-"], input=FLOATING_IPS_ON).exit_code == 0
    out = json.loads(trace(ctl, *flags, "-o", "json").output)
    assert out["verdict"] == "allow"
    (hop,) = out["hops"]
    (nat,) = hop["nat"]
    assert (nat["type"], nat["field"], nat["original"], nat["translated"], nat["chain"]) == (
        "DNAT",
        "destination",
        "198.18.7.1",
        "198.19.0.5",
        "cali-fip-dnat",
    )
    assert hop["endpoints"][0]["chain"] == "cali-tw-califront0"
    text = trace(ctl, *flags).output
    assert "  nat: DNAT destination 198.18.7.1 -> 198.19.0.5 [nat cali-fip-dnat]" in text
    masq = ("--from", "shop/front-0", "--to-ip", "192.0.2.9", "--protocol", "UDP", "--port", "53")
    out = json.loads(trace(ctl, *masq, "-o", "json").output)
    assert [(n["type"], n["translated"]) for n in out["hops"][0]["nat"]] == [("MASQUERADE", None)]
    assert "-> the outgoing interface's address [nat cali-nat-outgoing]" in trace(ctl, *masq).output


def test_a_workload_sending_from_an_address_not_its_own(ctl: CliRunner) -> None:
    flags = ("--from", "shop/web-0", "--to", "shop/db-0", "--protocol", "TCP", "--port", "5432")
    out = json.loads(trace(ctl, *flags, "--from-ip", "198.19.0.99", "-o", "json").output)
    assert out["verdict"] == "deny"
    decided = out["hops"][0]["decided_by"]
    assert (decided["what"], decided["table"], decided["chain"]) == (
        "anti-spoofing",
        "raw",
        "cali-PREROUTING",
    )
    text = trace(ctl, *flags, "--from-ip", "198.19.0.99").output.splitlines()
    assert text[0].startswith("shop/host--1-k8s-web--0-eth0 (198.19.0.99 on host-1)"), text
    assert text[2].startswith("  decided in [raw cali-PREROUTING]: "), text
    own = json.loads(trace(ctl, *flags, "--from-ip", "198.19.0.1", "-o", "json").output)
    assert own["verdict"] == "allow"


def test_a_refused_policy_in_etcd_denies_as_felix_enforces_it(
    ctl: CliRunner, etcd_server: EtcdServer
) -> None:
    """A policy another tool wrote with an L7 match calico-py refuses: Felix enforces it as
    deny-all for what it selects, and so does the trace."""
    policy = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "l7-web"},
        "spec": {
            "selector": "app == 'web'",
            "types": ["Egress"],
            "egress": [{"action": "Allow", "protocol": "TCP", "http": {"methods": ["GET"]}}],
        },
    }
    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd_server.endpoint})
    try:
        backend.put(ResourceKey(GlobalNetworkPolicy, "l7-web").path, json.dumps(policy).encode())
    finally:
        backend.close()
    flags = ("--from", "shop/web-0", "--to", "shop/db-0", "--protocol", "TCP", "--port", "5432")
    out = json.loads(trace(ctl, *flags, "-o", "json").output)
    assert out["verdict"] == "deny"
    egress = out["hops"][0]
    assert (egress["direction"], egress["verdict"]) == ("egress", "deny")
    assert egress["decided_by"]["policy"] == "l7-web"


def test_felix_settings_as_the_hosts_felix_reported_them(
    ctl: CliRunner, etcd_server: EtcdServer
) -> None:
    """Settings from Felix's environment or config file reach the trace through the key
    Felix reports them under (in its region); garbage there stops the trace."""
    flags = ("--from", "shop/db-0", "--to-host", "host-2", "--protocol", "ICMP", "-o", "json")
    assert json.loads(trace(ctl, *flags).output)["verdict"] == "deny"  # the default: DROP
    key = rules_settings_key("host-2", "region-r1")
    accept = RulesConfig(endpoint_to_host_action="ACCEPT").to_json()
    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd_server.endpoint})
    try:
        backend.put(key, json.dumps(accept).encode())
        out = json.loads(trace(ctl, *flags).output)
        assert out["verdict"] == "allow"
        assert out["hops"][0]["decided_by"]["what"] == "endpoint to host action"
        backend.put(key, json.dumps({**accept, "mark_accept": "0x10000"}).encode())
        bad = trace(ctl, *flags, ok=False)
        assert key in bad.output and "mark_accept: '0x10000' is not a int" in bad.output
    finally:
        backend.close()


def test_a_host_endpoint_by_expected_ip_on_the_interface_felix_reported(
    ctl: CliRunner, etcd_server: EtcdServer
) -> None:
    """host-4-any has only expectedIPs: Felix resolves it against the host's live addresses
    and reports the interface; the trace renders it there, or not at all when Felix found
    none (the refusal above is for a host whose Felix never reported)."""
    flags = ("--from-ip", "198.18.0.14", "--to", "shop/web-0", "--protocol", "ICMP", "-o", "json")
    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd_server.endpoint})
    key = host_endpoint_interfaces_key("host-4")
    try:
        backend.put(key, json.dumps({"host-4-any": "eth0"}).encode())
        out = json.loads(trace(ctl, *flags).output)
        egress = out["hops"][0]
        assert (out["verdict"], egress["host"], egress["verdict"]) == ("deny", "host-4", "deny")
        assert egress["endpoints"][0]["chain"] == "cali-th-eth0"  # no policy: default deny
        backend.put(key, b"{}")  # Felix found no interface with that address: no chains
        assert json.loads(trace(ctl, *flags).output)["verdict"] == "allow"
        backend.put(key, b'["eth0"]')
        bad = trace(ctl, *flags, ok=False)
        assert key in bad.output and "not a JSON object of host endpoint names" in bad.output
    finally:
        backend.close()
