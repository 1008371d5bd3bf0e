"""`calicoctl node diff`: the kernel against what Felix programs, computed by a dry-run Felix
with the running Felix's own configuration; it changes nothing, finds each kind of drift
an operator (or another tool) can cause, and says why it could not run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from calico import programs

from .conftest import Cluster, FelixHost

pytestmark = pytest.mark.fv

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")


def node_diff(host: FelixHost, *args: str, run_dir: Path | None = None) -> tuple[int, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CALICO_RUN_DIR": str(run_dir or host.run_dir),
        "ETCD_ENDPOINTS": host.etcd.unix_endpoint,
    }
    argv = ["ip", "netns", "exec", host.netns, CALICOCTL, "node", "diff", *args]
    proc = programs.run(argv, env=env, check=False, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


def drift_of(out: str) -> dict[tuple[str, str], dict[str, list[str]]]:
    items = json.loads(out)["drift"]
    return {(i["kind"], i["subject"]): i for i in items}


def test_node_diff_finds_tampering_and_changes_nothing(cluster: Cluster) -> None:
    host = cluster.host("h1", fast=False)  # no 2 s refresh repairing the tampering under us
    a = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    b = host.add_workload("cali1b", "198.19.0.2", "2001:db8:100::2")
    cluster.add_endpoint(host, a, "a", app="web")
    cluster.add_endpoint(host, b, "b", app="client")
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "web"},
        "spec": {"selector": "app == 'web'",
                 "ingress": [{"action": "Allow", "source": {"selector": "app == 'client'"}}]},
    })  # fmt: skip
    host.start()
    host.wait_ready()
    assert host.proc is not None
    (host.run_dir / "felix.pid").write_text(f"{host.proc.pid}\n")  # as `calico node` keeps it

    code, out = node_diff(host)
    assert (code, out.strip()) == (0, "no drift"), out

    # Another tool edits what Felix owns.
    first = host.chain("cali-tw-cali1a")[0]
    host.exec(["iptables", "-D", "cali-tw-cali1a", "1"])
    sets = host.exec(["ipset", "list", "-n"]).stdout.split()
    selector_set = next(s for s in sets if s.startswith("cali40s:"))
    host.exec(["ipset", "add", selector_set, "198.19.0.99"])
    host.exec(["ip", "route", "del", "198.19.0.2/32"])
    host.exec(["sysctl", "-w", "net.ipv4.conf.cali1a.proxy_arp=0"])
    routes_before = host.routes(4)

    code, out = node_diff(host, "-o", "json")
    assert code == 1, out
    drift = drift_of(out)
    chain = drift[("iptables", "v4 filter cali-tw-cali1a")]
    assert len(chain["missing"]) == 1 and chain["unexpected"] == []
    assert first.split('"cali:')[1][:16] in chain["missing"][0]  # the deleted rule, by hash
    assert drift[("ipset", selector_set)]["unexpected"] == ["198.19.0.99"]
    assert drift[("route", "198.19.0.2/32")]["missing"][0].startswith("198.19.0.2/32 dev cali1b")
    assert drift[("sysctl", "net.ipv4.conf.cali1a.proxy_arp")]["missing"] == [
        "net.ipv4.conf.cali1a.proxy_arp=1"
    ]
    assert len(drift) == 4, drift  # nothing else: no false drift
    # A dry run: the kernel still holds the tampering.
    assert host.routes(4) == routes_before
    assert "198.19.0.99" in host.exec(["ipset", "list", selector_set]).stdout

    # Against calicoctl's own environment for a named node: the same answer in text.
    code, text = node_diff(host, "--nodename", "h1", run_dir=host.run_dir / "none")
    assert code == 1, text
    assert "route 198.19.0.2/32:\n  + 198.19.0.2/32 dev cali1b" in text
    assert f"ipset {selector_set}:\n  - 198.19.0.99" in text


def test_node_diff_says_why_it_cannot_run(cluster: Cluster) -> None:
    host = cluster.host("h1")
    code, out = node_diff(host)
    assert code == 2 and "felix.pid: no running Felix" in out, out
