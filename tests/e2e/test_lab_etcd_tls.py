"""A two-host lab whose etcd has TLS and client-certificate authentication (`etcd: {tls:
true}`): calico node (Felix, the BGP agent), the CNI plugin and calicoctl through `lab exec`
all work with the host's certificate, workloads reach each other, and no secret (a BGP
password from CALICO_SECRETS_DIR, a private key) appears in any log or in calicoctl's YAML."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.lab import netns
from calico.lab.lab import Lab
from calico.lab.pki import ETCD_SERVER, host_client

from .conftest import eventually, lab_fixture, wait_until

LAB = """
name: e2etls
fabric: {ipv4: 198.18.0.0/24}
etcd: {tls: true}
pools:
  - {name: main-v4, cidr: 198.19.0.0/20}
hosts:
  - {name: host-1, ipv4: 198.18.0.11}
  - {name: host-2, ipv4: 198.18.0.12}
workloads:
  - {name: a1, host: host-1, labels: {app: a}, ports: [80]}
  - {name: b2, host: host-2, labels: {app: b}, ports: [80]}
"""
PASSWORD = "tls-lab-bgp-secret-93d1"
PEER = """apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: guarded}
spec:
  node: host-1
  peerIP: 198.18.0.99
  asNumber: 64999
  password: {secretKeyRef: {name: guarded-peer, key: password}}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from lab_fixture(LAB, tmp_path_factory.mktemp("tls"))


def test_every_component_uses_its_certificate(lab: Lab) -> None:
    assert lab.state.etcd_endpoint.startswith("https://")
    env = lab.exec_env("host-1")
    assert env["ETCD_CERT_FILE"].endswith(f"{host_client('host-1')}.crt")
    assert lab.pki is not None and Path(env["ETCD_CA_CERT_FILE"]) == lab.pki.ca_file
    eventually(lab, "a1", "b2", True, port=80)
    eventually(lab, "b2", "a1", True, port=80)
    nodes = json.loads(lab.exec("host-2", ["calicoctl", "get", "nodes", "-o", "json"]).stdout)
    assert {n["metadata"]["name"] for n in nodes["items"]} == {"host-1", "host-2"}


def test_no_client_certificate_is_refused_over_the_fabric(lab: Lab) -> None:
    env = {k: v for k, v in lab.exec_env("host-1").items() if k not in ("ETCD_CERT_FILE",
                                                                        "ETCD_KEY_FILE")}  # fmt: skip
    proc = netns.run(lab.exec_argv("host-1", ["calicoctl", "get", "nodes"]), check=False, env=env)
    assert proc.returncode != 0
    assert "TLS: etcd requires a client certificate and none is configured" in proc.stderr


def test_secrets_stay_out_of_logs_and_yaml(lab: Lab) -> None:
    secret = lab.secrets_dir("host-1") / "guarded-peer"
    secret.mkdir(parents=True, mode=0o700, exist_ok=True)
    (secret / "password").write_text(PASSWORD)
    (secret / "password").chmod(0o600)
    manifest = lab.dir / "peer.yaml"
    manifest.write_text(PEER)
    applied = lab.exec("host-1", ["calicoctl", "apply", "-f", str(manifest)])
    assert applied.returncode == 0, applied.stderr
    bird_files = list(lab.run_dir("host-1").rglob("*.conf")) + list(
        lab.run_dir("host-1").rglob("*.cfg")
    )
    wait_until(
        lambda: any(PASSWORD in f.read_text(errors="replace") for f in _files(bird_files)),
        30, "the BGP agent configures the peer's password",
    )  # fmt: skip
    shown = lab.exec("host-2", ["calicoctl", "get", "bgppeer", "guarded", "-o", "yaml"]).stdout
    assert "secretKeyRef" in shown and PASSWORD not in shown
    assert lab.pki is not None
    values = [PASSWORD] + [
        line
        for name in ("ca", ETCD_SERVER, host_client("host-1"), host_client("host-2"))
        for line in lab.pki.key(name).read_text().splitlines()
        if "-----" not in line
    ]
    logs = list(lab.dir.rglob("*.log"))  # node (BGP agent's lines too), Felix, CNI, etcd...
    assert {lab.run_dir("host-1") / "node.log", lab.run_dir("host-1") / "felix.log"} <= set(logs)
    found = [
        (str(log), v[:6]) for log in logs for v in values if v in log.read_text(errors="replace")
    ]
    assert found == []


def _files(candidates: list[Path]) -> list[Path]:
    return [f for f in candidates if f.is_file()]
