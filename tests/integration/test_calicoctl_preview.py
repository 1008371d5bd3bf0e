"""calicoctl apply|delete --preview against a real etcd: only what changes is printed, on
the protocols and ports the involved policies name, exit codes as kubectl diff, nothing
written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from calico.ctl import preview as preview_module
from calico.ctl.main import cli
from calico.ctl.preview import Probe, probes
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.model import parse_manifest
from calico.model.status_keys import host_endpoint_interfaces_key
from calico.rules.packet_walk import WalkError
from calico.testing.etcd_server import EtcdServer
from calico.testing.shop import DENY_DB
from calico.testing.shop import SHOP as BASE

pytestmark = pytest.mark.integration


@pytest.fixture
def ctl(etcd_server: EtcdServer) -> CliRunner:
    runner = CliRunner(env={"ETCD_ENDPOINTS": etcd_server.endpoint, "ETCD_CA_CERT_FILE": ""})
    assert runner.invoke(cli, ["apply", "-f", "-"], input=BASE).exit_code == 0
    return runner


def run(runner: CliRunner, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(cli, list(args), input=stdin)


def revision(etcd_server: EtcdServer) -> int:
    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd_server.endpoint})
    try:
        return backend.list("/calico/").revision
    finally:
        backend.close()


def test_apply_preview_prints_only_changes_and_writes_nothing(
    ctl: CliRunner, etcd_server: EtcdServer
) -> None:
    before = revision(etcd_server)
    result = run(ctl, "apply", "--preview", "-f", "-", stdin=DENY_DB)
    assert result.exit_code == 1, result.output
    assert result.output == (  # 8080 stays open for web; 5432 closes also from outside
        "newly denied: external 192.0.2.1 → shop/db-0 TCP 5432\n"
        "newly denied: shop/web-0 → shop/db-0 TCP 5432\n"
    )
    assert revision(etcd_server) == before  # nothing written
    assert run(ctl, "apply", "-f", "-", stdin=DENY_DB).exit_code == 0
    again = run(ctl, "apply", "--preview", "-f", "-", stdin=DENY_DB)
    assert again.exit_code == 0 and again.output.startswith("no reachability changes"), again.output


def test_delete_preview_by_file_and_by_name(ctl: CliRunner) -> None:
    assert run(ctl, "apply", "-f", "-", stdin=DENY_DB).exit_code == 0
    by_file = run(ctl, "delete", "--preview", "-f", "-", stdin=DENY_DB)
    assert (by_file.exit_code, by_file.output) == (
        1,
        "newly allowed: external 192.0.2.1 → shop/db-0 TCP 5432\n"
        "newly allowed: shop/web-0 → shop/db-0 TCP 5432\n",
    )
    by_name = run(ctl, "delete", "--preview", "networkpolicy", "db-ingress", "-n", "shop")
    assert (by_name.exit_code, by_name.output) == (by_file.exit_code, by_file.output)
    assert run(ctl, "get", "networkpolicy", "db-ingress", "-n", "shop").exit_code == 0  # kept


def test_errors_exit_2(ctl: CliRunner) -> None:
    bad = run(ctl, "apply", "--preview", "-f", "-", stdin="kind: NoSuchKind\n")
    assert bad.exit_code == 2, bad.output
    missing = run(ctl, "delete", "--preview", "networkpolicy", "nope", "-n", "shop")
    assert missing.exit_code == 2 and "nope" in missing.output, missing.output


def test_probes_are_what_the_rules_name() -> None:
    (policy,) = parse_manifest(DENY_DB, "test")
    assert probes([policy]) == [Probe("TCP", 5432), Probe("TCP", 8080)]
    (open_all,) = [r for r in parse_manifest(BASE, "test") if r.KIND == "GlobalNetworkPolicy"]
    assert probes([open_all]) == [Probe("ICMP"), Probe("TCP", 1)]
    udp = parse_manifest(
        "kind: GlobalNetworkPolicy\napiVersion: projectcalico.org/v3\nmetadata: {name: u}\n"
        "spec: {ingress: [{action: Deny, protocol: UDP, destination: {ports: ['1:3', 53]}}]}\n",
        "test",
    )
    assert probes(udp) == [Probe("UDP", 1), Probe("UDP", 53)]


def test_a_flow_the_trace_cannot_evaluate_stops_the_preview(
    ctl: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> None:
        raise WalkError("cannot evaluate match '-m foo'")

    monkeypatch.setattr(preview_module, "trace_rendered", refuse)
    result = run(ctl, "apply", "--preview", "-f", "-", stdin=DENY_DB)
    assert result.exit_code == 2, result.output
    assert "cannot preview shop/web-0 → shop/db-0 TCP 5432: cannot evaluate match" in result.output


TWINS = """
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {namespace: shop, labels: {app: web}}
spec: {node: host-1, orchestrator: k8s, pod: web-1, endpoint: eth0, interfaceName: caliweb1,
       ipNetworks: [198.19.0.3/32], profiles: [kns.shop]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {namespace: shop, labels: {app: web}}
spec: {node: host-1, orchestrator: k8s, pod: web-2, endpoint: eth0, interfaceName: caliweb2,
       ipNetworks: [198.19.0.4/32], profiles: [kns.shop]}
"""
DENY_ONE_WEB = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: shop}
spec:
  order: 10
  selector: app == 'db'
  ingress:
  - {action: Deny, protocol: TCP, source: {nets: [198.19.0.3/32]}, destination: {ports: [5432]}}
  - {action: Allow}
"""


def test_endpoints_no_rule_tells_apart_are_traced_once_and_each_reported(
    ctl: CliRunner, etcd_server: EtcdServer
) -> None:
    assert run(ctl, "apply", "-f", "-", stdin=TWINS).exit_code == 0
    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd_server.endpoint})
    try:
        client = ResourceClient(backend)
        every_web = preview_module.preview(client, parse_manifest(DENY_DB, "test"), delete=False)
        one_web = preview_module.preview(client, parse_manifest(DENY_ONE_WEB, "test"), False)
    finally:
        backend.close()
    # The three webs on host-1 are one class: each is reported, the flow traced once.
    assert [str(c.src) for c in every_web.changes] == [
        "external 192.0.2.1",
        "shop/web-0",
        "shop/web-1",
        "shop/web-2",
    ]
    assert {(c.change, c.dst, c.what) for c in every_web.changes} == {
        ("newly denied", "shop/db-0", "TCP 5432")
    }
    assert every_web.traced < every_web.compared
    # A rule naming one web's address splits the class: only that web is reported.
    assert [(c.change, c.src, c.dst, c.what) for c in one_web.changes] == [
        ("newly denied", "shop/web-1", "shop/db-0", "TCP 5432")
    ]


HOST_1 = """
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: host-1}
spec: {bgp: {ipv4Address: 198.19.1.1/24}}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: host-1-eth0, labels: {role: host}}
spec: {node: host-1, interfaceName: eth0, expectedIPs: [198.19.1.1]}
"""
HOST_8080 = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: host-8080}
spec:
  order: 10
  selector: role == 'host'
  ingress: [{action: Deny, protocol: TCP, destination: {ports: [8080]}}, {action: Allow}]
  egress: [{action: Allow}]
"""
WEB_EGRESS = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-egress, namespace: shop}
spec:
  order: 10
  selector: app == 'web'
  egress:
  - {action: Deny, protocol: TCP, destination: {nets: [203.0.113.0/24], ports: [443]}}
  - {action: Allow}
"""


def test_hosts_and_external_addresses_are_ends_too(ctl: CliRunner) -> None:
    assert run(ctl, "apply", "-f", "-", stdin=HOST_1).exit_code == 0
    host = run(ctl, "apply", "--preview", "-f", "-", stdin=HOST_8080)
    # A local workload reaches its host without the host endpoint's policy (Felix's
    # DefaultEndpointToHostAction); the other host's workload and the outside do not.
    assert (host.exit_code, host.output) == (
        1,
        "newly denied: external 192.0.2.1 → host host-1 TCP 8080\n"
        "newly denied: shop/db-0 → host host-1 TCP 8080\n",
    )
    out = run(ctl, "apply", "--preview", "-f", "-", stdin=WEB_EGRESS)
    # Probed inside the CIDR the rule names and outside it: only the inside address changes.
    assert (out.exit_code, out.output) == (
        1,
        "newly denied: shop/web-0 → external 203.0.113.1 TCP 443\n",
    )


BAD_NETS = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: bad, labels: {role: bad}}
spec: {nets: [203.0.113.16/28]}
"""
NO_BAD = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: no-bad}
spec:
  order: 10
  selector: app == 'web'
  egress: [{action: Deny, destination: {selector: role == 'bad'}}, {action: Allow}]
"""


def test_a_network_set_a_rule_selects_is_probed_inside(ctl: CliRunner) -> None:
    assert run(ctl, "apply", "-f", "-", stdin=BAD_NETS).exit_code == 0
    out = run(ctl, "apply", "--preview", "-f", "-", stdin=NO_BAD)
    assert (out.exit_code, out.output) == (
        1,
        "newly denied: shop/web-0 → external 203.0.113.17 ICMP\n"
        "newly denied: shop/web-0 → external 203.0.113.17 TCP 1\n",
    )


BY_IP = """
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: host-2-by-ip}
spec: {node: host-2, expectedIPs: [198.19.2.2]}
"""


def test_a_host_endpoint_by_ip_needs_felixs_report(ctl: CliRunner, etcd_server: EtcdServer) -> None:
    assert run(ctl, "apply", "-f", "-", stdin=BY_IP).exit_code == 0
    refused = run(ctl, "apply", "--preview", "-f", "-", stdin=DENY_DB)
    assert refused.exit_code == 2, refused.output
    assert "host host-2's host endpoint host-2-by-ip has no interfaceName" in refused.output
    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd_server.endpoint})
    try:
        backend.put(host_endpoint_interfaces_key("host-2"), b'{"host-2-by-ip": "eth0"}')
    finally:
        backend.close()
    reported = run(ctl, "apply", "--preview", "-f", "-", stdin=DENY_DB)
    assert reported.exit_code == 1, reported.output
    assert "newly denied: shop/web-0 → shop/db-0 TCP 5432\n" in reported.output
