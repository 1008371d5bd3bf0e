"""`calico lab` as an operator runs it: a failing `up` says where it failed, `down` removes
everything that `up` made."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from calico import programs
from calico.lab import netns, procs
from calico.lab.state import StateStore

from .conftest import require_lab_tools

CALICO = str(Path(sys.executable).parent / "calico")
LAB = """
name: e2ecli
fabric: {ipv4: 198.18.0.0/24}
pools: [{cidr: 198.19.0.0/20}]
hosts: [{name: host-1, ipv4: 198.18.0.11}]
resources: [bad.yaml]
"""
BAD = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: broken, namespace: apps}
spec: {selector: "app == ", types: [Ingress]}
"""


def calico_lab(state: Path, *args: str) -> programs.CompletedProcess[str]:
    return programs.run([CALICO, "lab", "--state-dir", str(state), *args], timeout=120)


def test_failed_up_names_the_step_and_down_removes_everything(tmp_path: Path) -> None:
    require_lab_tools()
    (tmp_path / "lab.yaml").write_text(LAB)
    (tmp_path / "bad.yaml").write_text(BAD)
    state_dir = tmp_path / "state"
    up = calico_lab(state_dir, "up", "-f", str(tmp_path / "lab.yaml"))
    assert up.returncode == 1
    assert "datastore: initialise and apply the lab's resources:" in up.stderr
    assert "spec.selector" in up.stderr and "calico lab down" in up.stderr
    state = StateStore(state_dir).load()
    etcd = state.proc("etcd")
    assert procs.alive(etcd) and all(netns.exists(ns) for ns in state.namespaces)
    status = calico_lab(state_dir, "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["up"] is False
    down = calico_lab(state_dir, "down")
    assert down.returncode == 0, down.stderr
    assert not procs.alive(etcd)
    assert not any(netns.exists(ns) for ns in state.namespaces)
    assert not state_dir.exists()
