"""calicoctl end to end against a real etcd: the verbs, outputs, exit codes and errors."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from calico import programs
from calico.ctl.main import cli
from calico.testing.etcd_server import EtcdServer

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[2] / "examples"
CALICOCTL = str(Path(sys.executable).parent / "calicoctl")

POOLS = """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool-a}
spec: {cidr: 198.19.0.0/20}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool-b}
spec: {cidr: 198.19.16.0/20, natOutgoing: true, blockSize: 24}
"""

BAD_SECOND = """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: fine}
spec: {cidr: 198.19.0.0/20}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-db}
spec:
  ingress:
  - action: Deny
    protocol: TCP
    destination: {ports: [80, "80:70"]}
"""


@pytest.fixture
def ctl(etcd_server: EtcdServer) -> CliRunner:
    return CliRunner(env={"ETCD_ENDPOINTS": etcd_server.endpoint, "ETCD_CA_CERT_FILE": ""})


def run(runner: CliRunner, *args: str, stdin: str | None = None, ok: bool = True) -> Result:
    result = runner.invoke(cli, list(args), input=stdin)
    assert (result.exit_code == 0) == ok, (args, result.output, result.stderr)
    return result


def test_apply_examples_then_get_every_format(ctl: CliRunner) -> None:
    out = run(ctl, "apply", "-f", str(EXAMPLES)).output
    assert out.startswith("Successfully applied ")
    table = run(ctl, "get", "ippools").output.splitlines()
    assert table[0].split() == ["NAME", "CIDR", "SELECTOR"]
    assert table[1].split() == ["default-ipv4-ippool", "198.19.0.0/16", "all()"]
    wide = run(ctl, "get", "ipp", "-o", "wide").output.splitlines()
    assert wide[0].split()[:4] == ["NAME", "CIDR", "NAT", "IPIPMODE"]
    weps = run(ctl, "get", "wep", "-n", "shop").output.splitlines()
    assert weps[0].split() == ["WORKLOAD", "NODE", "NETWORKS", "INTERFACE"]
    assert weps[1].split() == [
        "web-0",
        "host-1",
        "198.19.0.1/32,2001:db8:100::1/128",
        "cali0123456789a",
    ]
    assert run(ctl, "get", "wep").output.splitlines() == ["WORKLOAD   NODE   NETWORKS   INTERFACE"]
    everywhere = run(ctl, "get", "networkpolicy", "-A").output.splitlines()
    assert everywhere[0].split() == ["NAMESPACE", "NAME", "TIER"]
    assert everywhere[1].split() == ["shop", "allow-web", "default"]
    one = yaml.safe_load(run(ctl, "get", "np", "allow-web", "-n", "shop", "-o", "yaml").output)
    assert one["kind"] == "NetworkPolicy" and one["spec"]["types"] == ["Ingress", "Egress"]
    many = json.loads(run(ctl, "get", "gnp", "-o", "json").output)
    assert many["kind"] == "GlobalNetworkPolicyList"
    assert [i["metadata"]["name"] for i in many["items"]] == ["security.deny-blocklist"]


def test_get_yaml_applies_back_unchanged(ctl: CliRunner) -> None:
    run(ctl, "apply", "-f", "-", stdin=POOLS)
    exported = run(ctl, "get", "ippools", "-o", "yaml").output
    assert (
        run(ctl, "apply", "-f", "-", stdin=exported).output
        == "Successfully applied 2 'IPPool' resource(s)\n"
    )
    assert (
        yaml.safe_load(run(ctl, "get", "ippools", "-o", "yaml").output)["items"][1]["spec"][
            "blockSize"
        ]
        == 24
    )


def test_whole_file_is_validated_before_any_write(ctl: CliRunner) -> None:
    result = run(ctl, "apply", "-f", "-", stdin=BAD_SECOND, ok=False)
    assert result.stderr.strip() == (
        'GlobalNetworkPolicy "deny-db": spec.ingress[0].destination.ports[1]: '
        '"80:70" is not a valid port'
        " range: minimum port 80 is greater than maximum port 70"
    )
    assert "fine" not in run(ctl, "get", "ippools").output


# An upstream manifest with one refused value: the pool asks for IPIP.
REFUSED_THIRD = (
    POOLS.replace("pool-b", "pool-c").replace("198.19.16.0/20", "198.19.32.0/20")
    + """
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: tunnelled}
spec: {cidr: 198.19.48.0/20, ipipMode: Always}
"""
)


@pytest.mark.parametrize("verb", ["validate", "create", "apply", "replace"])
def test_a_refused_value_refuses_the_whole_file(ctl: CliRunner, verb: str) -> None:
    if verb == "replace":
        run(ctl, "apply", "-f", "-", stdin=POOLS)
    before = run(ctl, "get", "ippools", "-o", "yaml").stdout
    result = run(ctl, verb, "-f", "-", stdin=REFUSED_THIRD, ok=False)
    assert result.stderr.strip() == (
        'IPPool "tunnelled": spec.ipipMode: "Always" is not supported by calico-py'
        " (IPIP is not implemented); use ipipMode: Never (vxlanMode gives an overlay)"
    )
    assert run(ctl, "get", "ippools", "-o", "yaml").stdout == before
    assert "pool-c" not in before


def test_create_replace_delete_lifecycle(ctl: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(POOLS)
    assert (
        run(ctl, "create", "-f", str(path)).output
        == "Successfully created 2 'IPPool' resource(s)\n"
    )
    again = run(ctl, "create", "-f", str(path), ok=False)
    assert (
        again.stderr.strip()
        == "Failed to create any 'IPPool' resources: IPPool \"pool-a\" already exists"
    )
    assert run(ctl, "create", "-f", str(path), "--skip-exists").exit_code == 0
    stale = yaml.safe_load(run(ctl, "get", "ippool", "pool-a", "-o", "yaml").output)
    run(ctl, "replace", "-f", str(path))
    conflict = run(ctl, "replace", "-f", "-", stdin=yaml.safe_dump(stale), ok=False)
    assert "out of date" in conflict.stderr
    assert (
        run(ctl, "delete", "ippool", "pool-a").output
        == "Successfully deleted 1 'IPPool' resource(s)\n"
    )
    missing = run(ctl, "delete", "ippool", "pool-a", ok=False)
    assert 'IPPool "pool-a" does not exist' in missing.stderr
    run(ctl, "delete", "ippool", "pool-a", "--skip-not-exists")
    partial = run(ctl, "delete", "-f", str(path), ok=False)
    assert partial.stderr.startswith("Failed to delete any 'IPPool' resources")
    assert run(ctl, "delete", "-f", str(path), "--skip-not-exists").exit_code == 0
    assert run(ctl, "get", "ippools").output.splitlines() == ["NAME   CIDR   SELECTOR"]


def test_partial_success_is_reported(ctl: CliRunner) -> None:
    run(ctl, "apply", "-f", "-", stdin=POOLS.split("---")[1])
    result = run(ctl, "create", "-f", "-", stdin=POOLS, ok=False)
    assert result.stderr.startswith("Partial success: created the first 1 out of 2 resources")


def test_label_add_overwrite_remove(ctl: CliRunner) -> None:
    run(ctl, "apply", "-f", "-", stdin=POOLS)
    run(ctl, "label", "ippool", "pool-a", "env=prod")
    refused = run(ctl, "label", "ippool", "pool-a", "env=qa", ok=False)
    assert "already has label env=prod" in refused.stderr
    run(ctl, "label", "ippool", "pool-a", "env=qa", "--overwrite")
    labels = yaml.safe_load(run(ctl, "get", "ippool", "pool-a", "-o", "yaml").output)["metadata"][
        "labels"
    ]
    assert labels == {"env": "qa"}
    run(ctl, "label", "ippool", "pool-a", "env", "--remove")
    assert (
        "labels"
        not in yaml.safe_load(run(ctl, "get", "ippool", "pool-a", "-o", "yaml").output)["metadata"]
    )
    assert "not valid" in run(ctl, "label", "ippool", "pool-a", "bad key=x", ok=False).stderr


def test_builtins_present_and_protected(ctl: CliRunner) -> None:
    assert run(ctl, "get", "tier", "default").output.split() == [
        "NAME",
        "ORDER",
        "default",
        "1000000",
    ]
    assert "projectcalico-default-allow" in run(ctl, "get", "profiles").output
    info = yaml.safe_load(run(ctl, "get", "clusterinfo", "default", "-o", "yaml").output)
    assert info["spec"]["datastoreReady"] is True
    assert "built in" in run(ctl, "delete", "tier", "default", ok=False).stderr


def test_unknown_kind_and_missing_resource(ctl: CliRunner) -> None:
    assert "resource type 'pods' is not supported" in run(ctl, "get", "pods", ok=False).stderr
    assert 'IPPool "nope" does not exist' in run(ctl, "get", "ippool", "nope", ok=False).stderr


def test_config_file(etcd_server: EtcdServer, tmp_path: Path) -> None:
    cfg = tmp_path / "calicoctl.cfg"
    cfg.write_text(
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\n"
        f"spec:\n  datastoreType: etcdv3\n  etcdEndpoints: {etcd_server.endpoint}\n"
    )
    runner = CliRunner(env={"ETCD_ENDPOINTS": ""})
    run(runner, "--config", str(cfg), "apply", "-f", "-", stdin=POOLS)
    assert "pool-b" in run(runner, "-c", str(cfg), "get", "ippools").output
    assert (
        "does not exist"
        in run(runner, "-c", str(tmp_path / "nope.cfg"), "get", "ippools", ok=False).stderr
    )


def test_validate_is_offline() -> None:
    runner = CliRunner(env={"ETCD_ENDPOINTS": "http://127.0.0.1:9"})
    assert run(runner, "validate", "-f", str(EXAMPLES)).output.startswith(
        "Successfully validated 15 resource(s)"
    )
    assert "80:70" in run(runner, "validate", "-f", "-", stdin=BAD_SECOND, ok=False).stderr


def test_real_binary_unreachable_datastore_fails_fast() -> None:
    start = time.monotonic()
    proc = programs.run(
        [CALICOCTL, "get", "ippools"],
        env={"ETCD_ENDPOINTS": "http://127.0.0.1:9,http://127.0.0.1:10", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "no endpoint answered" in proc.stderr and "127.0.0.1:9" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert time.monotonic() - start < 60


def test_real_binary_reads_stdin(etcd_server: EtcdServer) -> None:
    env = {"ETCD_ENDPOINTS": etcd_server.endpoint, "PATH": "/usr/bin:/bin"}
    proc = programs.run([CALICOCTL, "apply", "-f", "-"], stdin=POOLS, env=env)
    assert (proc.returncode, proc.stdout) == (0, "Successfully applied 2 'IPPool' resource(s)\n")
    proc = programs.run([CALICOCTL, "version"], env=env)
    assert proc.returncode == 0 and "Cluster Version:   calico-py-" in proc.stdout


PASSWORD_PEER = """
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: border}
spec:
  peerIP: 198.18.0.254
  asNumber: 65000
  password:
    secretKeyRef: {name: bgp, key: border%s}
"""


def test_bgp_password_is_a_reference_and_optional_is_refused(ctl: CliRunner) -> None:
    """The datastore holds the secret's name and key only; the password lives on the nodes."""
    run(ctl, "apply", "-f", "-", stdin=PASSWORD_PEER % "")
    peer = yaml.safe_load(run(ctl, "get", "bgppeer", "border", "-o", "yaml").stdout)
    assert peer["spec"]["password"] == {"secretKeyRef": {"name": "bgp", "key": "border"}}
    result = run(ctl, "apply", "-f", "-", stdin=PASSWORD_PEER % ", optional: true", ok=False)
    assert "spec.password.secretKeyRef.optional: true is not supported by calico-py" in (
        result.stderr
    )
    assert "fail closed" in result.stderr
