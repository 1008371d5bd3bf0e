"""etcd members SIGKILLed under the Neutron driver and the DHCP agent, with their figures.

Run with ``.venv/bin/python bench/etcd_cluster_openstack.py [--rounds 3] [--no-write]`` as
root. The scenario is the test tests/openstack/test_neutron_etcd_kill.py (real Neutron
in-process with the calico driver as elected leader, calico-dhcp-agent as a process in a
netns, a 3-member etcd cluster whose endpoints both are given), run with more rounds: per round
the member the agent uses, then the member the driver uses, each SIGKILLed once as a follower
and once as the leader. Per kill: seconds until the driver's next write (a new port's
WorkloadEndpoint) is in etcd and until the agent's dnsmasq has the port's host entry, against
the same with every member up; over the run, agent restarts, agent re-lists, driver writes left
to a repair resync, driver resyncs and lost leaderships (goal 0 each). The table goes into
docs/reliability.md between the `etcd-cluster-openstack` markers unless --no-write. Exits 1
when the test failed (the figures it recorded are still written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico import programs
from calico.testing.doc_sections import run_stamp, write_section

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
SECTION = "etcd-cluster-openstack"
TEST = ROOT / "tests" / "openstack" / "test_neutron_etcd_kill.py"
COUNTS = {  # the test's counts over the whole run, each with goal 0
    "restarts": "agent restarts",
    "agent_relists": "agent re-lists",
    "driver_repairs": "driver writes left to a repair resync",
    "driver_resyncs": "driver resyncs",
    "driver_demoted": "driver leadership losses",
}
# An election (etcd's default 1 s timeout, randomised up to 2 s) stalls writes after a leader
# kill; a follower kill costs one refused connection.
SLACK = {"follower": 1.0, "leader": 2.5}


@dataclass(frozen=True, slots=True)
class Run:
    figures: dict[str, Any]  # what the test recorded (see its CALICO_KILL_FIGURES)
    passed: bool
    output: str  # pytest's, for a failure
    load: tuple[float, float]  # 1-minute load average before and after


def run(rounds: int = 3, progress: Callable[[str], None] = print) -> Run:
    with tempfile.TemporaryDirectory(prefix="calico-etcd-kill-bench-") as tmp:
        out = Path(tmp) / "figures.json"
        env = {**os.environ, "CALICO_KILL_ROUNDS": str(rounds), "CALICO_KILL_FIGURES": str(out)}
        argv = [sys.executable, "-m", "pytest", str(TEST), "-q", "-p", "no:cacheprovider"]
        progress(f"running {TEST.name} with {rounds} round(s) of 4 kills")
        before = os.getloadavg()[0]
        proc = programs.run(argv, env=env, cwd=ROOT, timeout=300.0 * rounds + 120)
        after = os.getloadavg()[0]
        if not out.exists():
            raise RuntimeError(f"the test recorded no figures:\n{proc.stdout[-6000:]}{proc.stderr}")
        figures = json.loads(out.read_text())
    return Run(figures, proc.returncode == 0, proc.stdout, (before, after))


def _spread(values: list[float]) -> str:
    return f"max {max(values):.2f}s (min {min(values):.2f}s, {len(values)} kills)"


def section(result: Run) -> str:
    when, machine = run_stamp()
    figures = result.figures
    floor = figures["floor"]
    rows = []
    for component in ("agent", "driver"):
        for role in ("follower", "leader"):
            kills = [
                k for k in figures["kills"] if (k["component"], k["role"]) == (component, role)
            ]
            if not kills:
                continue
            writes, dhcp = [k["write"] for k in kills], [k["dhcp"] for k in kills]
            met = max(writes) <= floor["write"] + SLACK[role] and max(dhcp) <= (
                floor["dhcp"] + SLACK[role]
            )
            figure = (
                f"driver write after {_spread(writes)}; DHCP host entry after {_spread(dhcp)}"
                + ("" if met else " (goal NOT met)")
            )
            goal = f"each within {SLACK[role]:.1f} s of its floor" + (
                " (etcd elects in 1-2 s)" if role == "leader" else ""
            )
            rows.append(
                f"| the {component}'s etcd member SIGKILLed as the {role} | {figure} | {goal} "
                f"| {when} | {machine} |"
            )
    counts = "; ".join(f"{label} {figures[key]}" for key, label in COUNTS.items())
    counts += (
        f" (watches the agent resumed on another member: {figures['agent_resumes']}; driver "
        f"requests left with an unknown outcome, finished by the driver: {figures['ambiguous']})"
    )
    if not result.passed:
        counts += " (the test FAILED)"
    goal = ", ".join("0" for _ in COUNTS) + "; the test passes"
    rows.append(f"| member kills, throughout | {counts} | {goal} | {when} | {machine} |")
    load = f"{result.load[0]:.1f} before, {result.load[1]:.1f} after"
    return "\n".join([
        "## etcd cluster under Neutron (bench/etcd_cluster_openstack.py)", "",
        f"Run {when} on {machine} (1-minute load {load}): "
        "tests/openstack/test_neutron_etcd_kill.py with more rounds. Neutron in-process (ML2, "
        "sqlite) with the calico driver as elected leader and calico-dhcp-agent as a process in"
        " a netns, both given all endpoints of a 3-member etcd cluster (etcd's default raft "
        "timings: heartbeat 100 ms, election timeout 1 s). Per round the member the agent uses,"
        " then the one the driver uses, SIGKILLed once as a follower and once as the leader "
        "(leadership moved onto or off it first), started again after. Right after each kill "
        "Neutron's API creates a VM port on a network whose dnsmasq runs: seconds from the kill"
        " until its WorkloadEndpoint is in etcd (the API call's postcommit writes it) and until"
        " the agent's dnsmasq host file has it. Floor, every member up (fastest of 3): write "
        f"{floor['write']:.2f}s, DHCP host entry {floor['dhcp']:.2f}s. Every API call succeeded "
        "(the test asserts each), and at the end etcd held every port, security group and "
        "subnet Neutron did. The counts also cover the test's last kills: the driver's member "
        "killed (as follower, then leader) during back-to-back port creates, renames and "
        "deletes, and frozen (SIGSTOP) with a port's endpoint delete in flight, then killed.",
        "",
        "| test | figure | goal | date | machine |", "| --- | --- | --- | --- | --- |", *rows,
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of 4 kills")
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    opts = parser.parse_args()
    result = run(opts.rounds)
    text = section(result)
    print(text)
    if not opts.no_write:
        write_section(DOC, SECTION, text)
    if not result.passed:
        print(result.output[-6000:])
        sys.exit(1)


if __name__ == "__main__":
    main()
