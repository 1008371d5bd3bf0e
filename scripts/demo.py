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

`--vxlan` (`make demo-vxlan`) shows VXLAN: examples/lab/vxlan.yaml (two racks of two hosts
behind a plain router that knows no workload address, networking backend vxlan, pools in
vxlanMode CrossSubnet), a host's VXLAN device and routes, connectivity over IPv4 and IPv6,
the router's UDP/4789 counters for traffic within a rack (native) and across racks (VXLAN),
and natOutgoing to an external machine behind the router.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from calico.lab.base import LabError
from calico.lab.lab import Lab
from calico.lab.labfile import LabFileError, read_lab
from calico.lab.report import Matrix, format_matrix, format_status
from calico.lab.state import StateStore, state_dir_for

ROOT = Path(__file__).resolve().parent.parent
LAB_FILE = ROOT / "examples" / "lab" / "demo.yaml"
POLICY = ROOT / "examples" / "lab" / "policy.yaml"
L3_LAB_FILE = ROOT / "examples" / "lab" / "l3-fabric.yaml"
VXLAN_LAB_FILE = ROOT / "examples" / "lab" / "vxlan.yaml"
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


def counted_pings(lab: Lab, src: str, dst: str) -> bool:
    """Ten pings; print what the router's UDP/4789 counters saw meanwhile."""
    before = lab.vxlan_counts()
    ok = lab.exec(src, ["ping", "-n", "-q", "-c", "10", "-i", "0.05", "-W", "2",
                        lab.addresses(dst)[0] or ""]).returncode == 0  # fmt: skip
    after = lab.vxlan_counts()
    print(f"{src} -> {dst}: 10 pings {'answered' if ok else 'FAILED'}; the router saw "
          f"{after.routed - before.routed} UDP/4789 packets routed between racks, "
          f"{after.bridged - before.bridged} bridged within a rack", flush=True)  # fmt: skip
    return ok


def demo_vxlan(lab: Lab) -> bool:
    title(f"Bringing up {VXLAN_LAB_FILE.relative_to(ROOT)}")
    lab.up(progress=lambda msg: print(f"  {msg}", flush=True))
    print(format_status(lab.status()), flush=True)
    title("host-a1's VXLAN device (VNI 4096, UDP 4789) and routes: its rack-mate's block via "
          "host-a2 on eth0, rack b's via their VTEPs on vxlan.calico")  # fmt: skip
    show(lab, "host-a1", ["ip", "-d", "link", "show", "vxlan.calico"])
    show(lab, "host-a1", ["ip", "route", "show"])
    title("Connectivity (TCP, IPv4 then IPv6)")
    cells = []
    for ipv6 in (False, True):
        result = lab.matrix(ipv6=ipv6)
        print(format_matrix(result), flush=True)
        cells += list(result.cells.values())
    title("Within a rack traffic is native, across racks it is VXLAN (the router's counters)")
    ok = counted_pings(lab, "w-a1", "w-a2") and counted_pings(lab, "w-a1", "w-b1")
    title("natOutgoing: workloads reach `ext`, which has no route to the pools")
    nat = all(lab.probe(src, "ext", "icmp").ok for src in ("w-a1", "w-b2"))
    print(f"w-a1, w-b2 -> ext: {'answered' if nat else 'FAILED'}", flush=True)
    return all(cells) and ok and nat


def main() -> int:
    if os.geteuid() != 0:
        print("demo: needs root (it builds network namespaces)", file=sys.stderr)
        return 1
    mode = sys.argv[1] if sys.argv[1:] in (["--l3"], ["--vxlan"]) else ""
    files = {"--l3": L3_LAB_FILE, "--vxlan": VXLAN_LAB_FILE}
    try:
        spec = read_lab(files.get(mode, LAB_FILE))
    except LabFileError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    state_dir = state_dir_for(spec.name)
    if StateStore(state_dir).exists():
        print(f"Removing the lab an earlier run left in {state_dir}", flush=True)
        Lab.open(state_dir).down()
    lab = Lab.create(spec, state_dir)
    ok = False
    try:
        ok = {"--l3": demo_l3, "--vxlan": demo_vxlan}.get(mode, demo)(lab)
    except LabError as exc:
        print(f"demo: {exc}", file=sys.stderr)
    finally:
        title("Taking the lab down")
        lab.down()
        print("Every namespace and process of the lab is gone.", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
