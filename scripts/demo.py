"""`make demo`: a three-host Calico lab on this machine, policy applied, connectivity shown.

It brings up examples/lab/demo.yaml (hosts as network namespaces, each running `calico node
run`: Felix, the BGP agent and BIRD; one etcd; a border router running FRR with an external
client behind it; workloads attached through the CNI plugin), shows the BGP sessions and the
routes they produced, prints which workload reaches which, applies examples/lab/policy.yaml
with calicoctl from a host, and prints the matrix again. The lab is always taken down, also
on failure or Ctrl-C; a lab left behind by an interrupted earlier run is removed first.

`--l3` (`make demo-l3`) shows the L3 fabric instead: examples/lab/l3-fabric.yaml (two racks
behind FRR ToRs, two spines, AS per rack), the routes a host learns from its ToR, connectivity
across racks, then a spine failing and a ToR restarting, with the time each took to heal.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from calico.lab.base import LabError
from calico.lab.lab import Lab
from calico.lab.labfile import read_lab
from calico.lab.report import Matrix, format_matrix, format_status
from calico.lab.state import StateStore, state_dir_for

ROOT = Path(__file__).resolve().parent.parent
LAB_FILE = ROOT / "examples" / "lab" / "demo.yaml"
POLICY = ROOT / "examples" / "lab" / "policy.yaml"
L3_LAB_FILE = ROOT / "examples" / "lab" / "l3-fabric.yaml"
HEAL_TIMEOUT = 60.0
SOURCES = ["frontend", "web", "db", "guest", "client"]
TARGETS = ["frontend", "web", "db", "guest"]
# What the policy must allow (True) or block (False), TCP to each target's port.
EXPECTED_AFTER = {
    ("frontend", "web"): True, ("frontend", "db"): False, ("web", "db"): True,
    ("guest", "db"): False, ("guest", "web"): False, ("client", "web"): True,
    ("client", "db"): False, ("db", "frontend"): True, ("client", "guest"): True,
}  # fmt: skip


def title(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def show(lab: Lab, host: str, argv: list[str]) -> None:
    print(f"$ calico lab exec {host} -- {' '.join(argv)}", flush=True)
    proc = lab.exec(host, argv)
    print((proc.stdout + proc.stderr).rstrip(), flush=True)
    if proc.returncode != 0:
        raise LabError(host, " ".join(argv), f"exited {proc.returncode}")


def matrix(lab: Lab) -> Matrix:
    result = lab.matrix("tcp", sources=SOURCES, targets=TARGETS)
    print(format_matrix(result), flush=True)
    return result


def wait_for_policy(lab: Lab, timeout: float = 15.0) -> None:
    """Policy is programmed asynchronously by each host's Felix: wait for its first effect."""
    deadline = time.monotonic() + timeout
    while lab.probe("guest", "db").ok and time.monotonic() < deadline:
        time.sleep(0.2)


def demo(lab: Lab) -> bool:
    title(f"Bringing up {LAB_FILE.relative_to(ROOT)}")
    lab.up(progress=lambda msg: print(f"  {msg}", flush=True))
    print(format_status(lab.status()), flush=True)
    title("BGP sessions of host-1 (calicoctl node status, run inside the host)")
    show(lab, "host-1", ["calicoctl", "node", "status"])
    title("host-1's routing table: remote workload blocks come from BIRD (proto bird)")
    show(lab, "host-1", ["ip", "route", "show"])
    title("Connectivity before policy (TCP, rows connect to columns; the client is behind the "
          "border router)")  # fmt: skip
    matrix(lab)
    title(f"Applying {POLICY.relative_to(ROOT)} with calicoctl on host-1")
    show(lab, "host-1", ["calicoctl", "apply", "-f", str(POLICY)])
    wait_for_policy(lab)
    title("Connectivity after policy")
    after = matrix(lab)
    wrong = [pair for pair, ok in EXPECTED_AFTER.items() if after.cells.get(pair) is not ok]
    if wrong:
        print(f"demo: unexpected results for {wrong}", file=sys.stderr)
    return not wrong


def seconds_to_heal(lab: Lab) -> float | None:
    """Probe every workload pair until all connect; the seconds that took (None: never)."""
    start = time.monotonic()
    while time.monotonic() - start < HEAL_TIMEOUT:
        if all(ok is not False for ok in lab.matrix().cells.values()):
            return time.monotonic() - start
    return None


def demo_l3(lab: Lab) -> bool:
    title(f"Bringing up {L3_LAB_FILE.relative_to(ROOT)}")
    lab.up(progress=lambda msg: print(f"  {msg}", flush=True))
    print(format_status(lab.status()), flush=True)
    title("host-1a's routes: the other rack's blocks via its ToR (198.18.1.1), its rack-mate's "
          "blocks direct (reflected by the ToR)")  # fmt: skip
    show(lab, "host-1a", ["ip", "route", "show"])
    title("Connectivity across racks (TCP)")
    before = lab.matrix()
    print(format_matrix(before), flush=True)
    healthy = all(ok is not False for ok in before.cells.values())
    title("spine-1 fails (links down, FRR killed)")
    lab.fail_spine("spine-1")
    spine = seconds_to_heal(lab)
    print(f"every workload reaches every other {spine:.2f}s later" if spine is not None
          else f"not healed within {HEAL_TIMEOUT:.0f}s", flush=True)  # fmt: skip
    title("tor-2 restarts (FRR stopped, then started)")
    lab.stop_router("tor-2")
    lab.start_router("tor-2")
    tor = seconds_to_heal(lab)
    print(f"every workload reaches every other {tor:.2f}s after FRR started" if tor is not None
          else f"not healed within {HEAL_TIMEOUT:.0f}s", flush=True)  # fmt: skip
    print(format_matrix(lab.matrix()), flush=True)
    return healthy and spine is not None and tor is not None


def main() -> int:
    if os.geteuid() != 0:
        print("demo: needs root (it builds network namespaces)", file=sys.stderr)
        return 1
    l3 = sys.argv[1:] == ["--l3"]
    spec = read_lab(L3_LAB_FILE if l3 else LAB_FILE)
    state_dir = state_dir_for(spec.name)
    if StateStore(state_dir).exists():
        print(f"Removing the lab an earlier run left in {state_dir}", flush=True)
        Lab.open(state_dir).down()
    lab = Lab.create(spec, state_dir)
    ok = False
    try:
        ok = demo_l3(lab) if l3 else demo(lab)
    except LabError as exc:
        print(f"demo: {exc}", file=sys.stderr)
    finally:
        title("Taking the lab down")
        lab.down()
        print("Every namespace and process of the lab is gone.", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
