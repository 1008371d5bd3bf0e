"""calicoctl patch, get -o custom-columns, ipam configure, ipam check/release --from-report and
node diags end to end against a real etcd, through the calicoctl entry point."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from calico.ctl.main import cli
from calico.datastore.etcd import EtcdBackend
from calico.ipam.allocator import IPAMClient
from calico.ipam.api import AutoAssignRequest, PoolsExhausted
from calico.model.keys import ResourceKey
from calico.model.network import IPAMConfiguration, IPPool
from calico.testing.etcd_server import EtcdServer

pytestmark = pytest.mark.integration

POOL = """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 198.18.8.0/29, blockSize: 29, natOutgoing: true}
"""


@pytest.fixture
def ctl(etcd_server: EtcdServer) -> CliRunner:
    return CliRunner(env={"ETCD_ENDPOINTS": etcd_server.endpoint, "ETCD_CA_CERT_FILE": ""})


def run(runner: CliRunner, *args: str, stdin: str | None = None, ok: bool = True) -> Result:
    result = runner.invoke(cli, list(args), input=stdin, prog_name="calicoctl")
    assert (result.exit_code == 0) == ok, (args, result.output)
    return result


def test_patch_writes_a_valid_result_and_nothing_else(
    ctl: CliRunner, make_backend: Callable[..., EtcdBackend]
) -> None:
    run(ctl, "apply", "-f", "-", stdin=POOL)
    first = yaml.safe_load(run(ctl, "get", "ippool", "pods", "-o", "yaml").output)
    out = run(ctl, "patch", "ippool", "pods", "-p", '{"spec": {"natOutgoing": false}}').output
    assert out == "Successfully patched 1 'IPPool' resource\n"
    pool = yaml.safe_load(run(ctl, "get", "ippool", "pods", "-o", "yaml").output)
    assert pool["spec"]["natOutgoing"] is False and pool["spec"]["cidr"] == "198.18.8.0/29"
    backend = make_backend()
    key = ResourceKey(IPPool, "pods").path
    before = backend.get(key)
    out = run(ctl, "patch", "ippool", "pods", "-p", '{"spec": {"blockSize": 99}}', ok=False).output
    assert "spec.blockSize" in out
    stale = f'{{"metadata": {{"resourceVersion": "{first["metadata"]["resourceVersion"]}"}}}}'
    assert "out of date" in run(ctl, "patch", "ippool", "pods", "-p", stale, ok=False).output
    after = backend.get(key)
    assert before is not None and after is not None and after.mod_revision == before.mod_revision
    table = run(ctl, "get", "ippool", "-o", "custom-columns=NAME,NAT,CIDR").output
    assert table.splitlines() == ["NAME   NAT     CIDR", "pods   false   198.18.8.0/29"]


def test_strict_affinity_set_by_calicoctl_stops_borrowing(
    ctl: CliRunner, make_backend: Callable[..., EtcdBackend]
) -> None:
    run(ctl, "apply", "-f", "-", stdin=POOL)  # one block: whoever claims it owns the pool
    ipam = IPAMClient(make_backend())
    ipam.auto_assign(AutoAssignRequest("net.a1", "host-a"))
    out = run(ctl, "ipam", "configure", "--strictaffinity=true").output
    assert out == "Successfully set StrictAffinity to: true\n"
    assert ipam.resources.get(IPAMConfiguration, "default").spec.strictAffinity is True
    with pytest.raises(PoolsExhausted, match="strictAffinity"):
        ipam.auto_assign(AutoAssignRequest("net.b1", "host-b"))
    run(ctl, "ipam", "configure", "--strictaffinity=false")
    borrowed = ipam.auto_assign(AutoAssignRequest("net.b1", "host-b")).ipv4
    assert borrowed and borrowed[0].startswith("198.18.8.")


def test_check_lock_release_from_report_unlock(
    ctl: CliRunner, make_backend: Callable[..., EtcdBackend], tmp_path: Path
) -> None:
    """Calico's documented workflow, with the lock done by patching ClusterInformation."""
    run(ctl, "apply", "-f", "-", stdin=POOL)
    ipam = IPAMClient(make_backend())
    leaked = ipam.auto_assign(AutoAssignRequest("net.gone", "host-a")).ipv4[0].split("/")[0]
    report = tmp_path / "report.json"
    run(ctl, "ipam", "check", "-o", str(report))
    refused = run(ctl, "ipam", "release", "--from-report", str(report), ok=False).output
    assert "data store is not locked" in refused  # and the report is now stale
    lock = '{"spec": {"datastoreReady": false}}'
    run(ctl, "patch", "clusterinformation", "default", "-p", lock)
    stale = run(ctl, "ipam", "release", "--from-report", str(report), "--force", ok=False).output
    assert "the provided reports are all stale" in stale
    out = run(ctl, "ipam", "check", "-o", str(report), "--show-problem-ips").output
    assert f"  {leaked} leaked; attrs Main:net.gone" in out
    assert json.loads(report.read_text())["datastoreLocked"] is True
    out = run(ctl, "ipam", "release", "--from-report", str(report)).output
    assert "Released 1 IPs successfully" in out and "You may now unlock" in out
    assert ipam.allocation_of(leaked) is None
    run(ctl, "patch", "clusterinformation", "default", "-p", '{"spec": {"datastoreReady": true}}')
    assert "found 0 problems" in run(ctl, "ipam", "check").output


def test_node_diags_includes_the_datastore_status(etcd_server: EtcdServer, tmp_path: Path) -> None:
    env = {
        "ETCD_ENDPOINTS": etcd_server.endpoint,
        "ETCD_CA_CERT_FILE": "",
        "CALICO_RUN_DIR": str(tmp_path / "run"),
        "TMPDIR": str(tmp_path),
    }
    out = run(CliRunner(env=env), "node", "diags", "--log-dir", str(tmp_path / "logs")).output
    path = Path(out.splitlines()[-1].removeprefix("Diags saved to "))
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
        info = tar.extractfile("diagnostics/datastore/clusterinformation.yaml")
        assert info is not None and b"clusterGUID" in info.read()
    assert {"diagnostics/ipv4_tables", "diagnostics/ipsets", "diagnostics/links"} <= names
