"""calicoctl ipam show/release/check end to end against a real etcd, with allocations made by
the IPAM library as the CNI plugin makes them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from calico.ctl.main import cli
from calico.datastore.etcd import EtcdBackend
from calico.ipam.allocator import IPAMClient
from calico.ipam.api import AutoAssignRequest
from calico.testing.etcd_server import EtcdServer

pytestmark = pytest.mark.integration

POOL = """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 10.30.0.0/24, blockSize: 29}
"""


def wep_yaml(pod: str, container: str, ip: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {"namespace": "shop"},
            "spec": {
                "orchestrator": "k8s",
                "node": "node-1",
                "pod": pod,
                "endpoint": "eth0",
                "containerID": container,
                "ipNetworks": [f"{ip}/32"],
                "interfaceName": f"cali{container[:11]}",
            },
        }
    )


@pytest.fixture
def ctl(etcd_server: EtcdServer) -> CliRunner:
    return CliRunner(env={"ETCD_ENDPOINTS": etcd_server.endpoint, "ETCD_CA_CERT_FILE": ""})


@pytest.fixture
def ipam(ctl: CliRunner, make_backend: Callable[..., EtcdBackend]) -> IPAMClient:
    run(ctl, "apply", "-f", "-", stdin=POOL)
    return IPAMClient(make_backend())


def run(runner: CliRunner, *args: str, stdin: str | None = None, ok: bool = True) -> Result:
    result = runner.invoke(cli, list(args), input=stdin)
    assert (result.exit_code == 0) == ok, (args, result.output, result.stderr)
    return result


def cni_add(ipam: IPAMClient, container: str, pod: str) -> str:
    request = AutoAssignRequest(
        f"k8s-pod-network.{container}", "node-1", attrs={"namespace": "shop", "pod": pod}
    )
    return ipam.auto_assign(request).ipv4[0].split("/")[0]


def test_ipam_show_usage_blocks_and_single_ip(ctl: CliRunner, ipam: IPAMClient) -> None:
    ip = cni_add(ipam, "c0ffee000001", "web-0")
    for i in range(2, 10):
        cni_add(ipam, f"c0ffee00000{i}", f"web-{i}")
    table = run(ctl, "ipam", "show").output.splitlines()
    assert table[1].split("|")[1:-1] == [
        " GROUPING ",
        "     CIDR     ",
        " IPS TOTAL ",
        " IPS IN USE ",
        " IPS FREE  ",
    ]
    assert [c.strip() for c in table[3].split("|")[1:-1]] == [
        "IP Pool",
        "10.30.0.0/24",
        "256",
        "9 (4%)",
        "247 (96%)",
    ]
    assert table[0] == table[2] == table[-1] and table[0].startswith("+----------+")
    blocks = run(ctl, "ipam", "show", "--show-blocks").output.splitlines()
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in blocks[3:-1]]
    assert [r[0] for r in rows] == ["IP Pool", "Block", "Block"]
    assert sorted(r[3] for r in rows[1:]) == ["1 (12%)", "8 (100%)"]
    shown = run(ctl, "ipam", "show", f"--ip={ip}").output
    assert shown == (
        f"IP {ip} is in use\nHandle ID: k8s-pod-network.c0ffee000001\nAttributes:\n"
        "  namespace: shop\n  node: node-1\n  pod: web-0\n"
    )
    assert run(ctl, "ipam", "show", "--ip=10.30.0.250").output == "10.30.0.250 is not assigned\n"
    assert "Invalid IP address" in run(ctl, "ipam", "show", "--ip=nope", ok=False).stderr


def test_ipam_release(ctl: CliRunner, ipam: IPAMClient) -> None:
    ip = cni_add(ipam, "c0ffee000001", "web-0")
    assert run(ctl, "ipam", "release", f"--ip={ip}").output == (
        f"Successfully released IP address {ip}\n"
    )
    assert ipam.ips_by_handle("k8s-pod-network.c0ffee000001") == []
    again = run(ctl, "ipam", "release", f"--ip={ip}", ok=False)
    assert again.stderr.strip() == f"IP address {ip} is not assigned"
    assert "Invalid IP address" in run(ctl, "ipam", "release", "--ip=1.2.3", ok=False).stderr


def test_ipam_check_finds_a_leak(ctl: CliRunner, ipam: IPAMClient, tmp_path: Path) -> None:
    """The workload of one allocation is gone (a CNI DEL that never ran): reported, with a
    JSON report; once released, the check is clean."""
    kept = cni_add(ipam, "c0ffee000001", "web-0")
    leaked = cni_add(ipam, "c0ffee000002", "web-1")
    run(ctl, "apply", "-f", "-", stdin=wep_yaml("web-0", "c0ffee000001", kept))
    run(ctl, "apply", "-f", "-", stdin=wep_yaml("web-1", "c0ffee000002", leaked))
    run(ctl, "delete", "workloadendpoint", "node--1-k8s-web--1-eth0", "-n", "shop")
    report_path = tmp_path / "report.json"
    out = run(ctl, "ipam", "check", "-o", str(report_path), "--show-problem-ips").output
    assert "Found 2 IPAM blocks." not in out and "Found 1 IPAM blocks." in out
    assert f"  {leaked} leaked; attrs Main:k8s-pod-network.c0ffee000002" in out
    assert "Found 1 IPs that are allocated in IPAM but not actually in use." in out
    assert out.rstrip().endswith("Check complete; found 1 problems.")
    report = json.loads(report_path.read_text())
    assert report["allocations"][leaked][0]["inUse"] is False
    assert report["allocations"][kept][0]["owners"] == ["Workload(shop/node--1-k8s-web--0-eth0)"]
    assert report["clusterGUID"] and report["datastoreLocked"] is False
    run(ctl, "ipam", "release", f"--ip={leaked}")
    clean = run(ctl, "ipam", "check").output
    assert clean.rstrip().endswith("Check complete; found 0 problems.")
