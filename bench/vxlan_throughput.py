"""Benchmark: VXLAN throughput against the native routed path, between the same two lab hosts.

Run with ``.venv/bin/python bench/vxlan_throughput.py [--samples 7] [--seconds 3]`` as root.

One lab (`calico.lab`: etcd, `calico node run` with networking backend vxlan on two hosts of
one bridged subnet) with two IPv4 pools: `bench-routed` in vxlanMode CrossSubnet, whose blocks
the hosts route natively (`<block> via <host> dev eth0`, the hosts sharing a subnet), and
`bench-vxlan` in vxlanMode Always (`<block> via <tunnel address> dev vxlan.calico onlink`).
Each host has one workload from each pool; the same hosts, links, Felix and policy path carry
both, so the only difference is the encapsulation. A sample is an iperf3 TCP run of
`--seconds` from the workload on h0 to the one on h1 (receiver's throughput); the two paths
alternate, `--samples` times each. The script checks that each pair's route is the one named
above before measuring.

The floor, measured in the same run: two plain namespaces on a bridge, iperf3 between their
addresses (native) and over a hand-made VXLAN device pair (VNI 4096, UDP 4789, `remote` the
other namespace, the kernel's MTU). Figures are medians in Gbit/s; ratio = calico / floor, and
the last row is VXLAN / routed for calico and for the floor.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from calico.lab import netns
from calico.lab.lab import Lab, running_lab
from calico.lab.labfile import load_lab
from calico.lab.spec import LabSpec
from calico.model.vxlan import DEFAULT_PORT, DEFAULT_VNI, device_name
from calico.testing.iperf import tcp_gbps

PATHS = {"routed": ("r0", "r1"), "vxlan": ("v0", "v1")}  # source, target workload


@dataclass(frozen=True)
class Result:
    """Gbit/s per sample."""

    routed: list[float]
    vxlan: list[float]
    floor_routed: list[float]
    floor_vxlan: list[float]


# -- calico-py: one lab, two pools -------------------------------------------------------------


def lab_file() -> str:
    doc = {
        "name": "benchvx",
        "networkingBackend": "vxlan",
        "fabric": {"ipv4": "198.18.0.0/24"},
        "pools": [
            {"name": "bench-routed", "cidr": "198.19.0.0/20", "blockSize": 26,
             "vxlanMode": "CrossSubnet"},
            {"name": "bench-vxlan", "cidr": "198.19.16.0/20", "blockSize": 26,
             "vxlanMode": "Always"},
        ],
        "hosts": [{"name": f"h{i}", "ipv4": f"198.18.0.{11 + i}"} for i in range(2)],
        "workloads": [
            {"name": f"{p}{i}", "host": f"h{i}", "ipPools": [pool]}
            for p, pool in (("r", "bench-routed"), ("v", "bench-vxlan"))
            for i in range(2)
        ],
    }  # fmt: skip
    return yaml.safe_dump(doc)


def check_paths(lab: Lab) -> None:
    """The routed pair goes out eth0 to h1, the VXLAN pair through h0's VXLAN device."""
    for path, device in (("routed", "eth0"), ("vxlan", device_name(4))):
        target = lab.state.workloads[PATHS[path][1]].ipv4 or ""
        out = lab.exec("h0", ["ip", "-j", "route", "get", target]).stdout
        got = json.loads(out or "[{}]")[0].get("dev")
        if got != device:
            raise RuntimeError(f"{path}: h0 routes {target} via {got!r}, not {device}: {out}")


def calico_samples(
    spec: LabSpec, samples: int, seconds: float, root: Path
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {path: [] for path in PATHS}
    with running_lab(spec, root / "calico") as lab:
        check_paths(lab)
        for k in range(samples):
            for path in list(PATHS)[:: 1 if k % 2 == 0 else -1]:  # alternate the order
                src, dst = PATHS[path]
                address = lab.state.workloads[dst].ipv4 or ""
                out[path].append(tcp_gbps(lab.netns_of(dst), lab.netns_of(src), address, seconds))
    return out


# -- the floor: two plain namespaces ------------------------------------------------------------


class Floor:
    """Namespaces a and b on a bridge, with a VXLAN device pair between them."""

    ADDRESSES = {"a": ("198.18.0.1", "198.19.0.1"), "b": ("198.18.0.2", "198.19.0.2")}

    def __init__(self) -> None:
        self.prefix = f"vfl{secrets.token_hex(2)}"
        self.namespaces: list[str] = []

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def _add(self, name: str) -> str:
        self.namespaces.append(self.ns(name))  # recorded first: close() always finds it
        netns.add(self.ns(name))
        return self.ns(name)

    def build(self) -> None:
        fabric = self._add("fabric")
        netns.ip_batch(fabric, ["link add br0 type bridge", "link set br0 up"])
        for i, (name, (underlay, overlay)) in enumerate(self.ADDRESSES.items()):
            ns = self._add(name)
            netns.veth(fabric, f"p{i}", ns, "eth0")
            netns.ip(fabric, "link", "set", f"p{i}", "master", "br0")
            (remote, _), = [a for n, a in self.ADDRESSES.items() if n != name]  # fmt: skip
            netns.ip_batch(ns, [
                f"addr add {underlay}/24 dev eth0",
                f"link add vx0 type vxlan id {DEFAULT_VNI} dstport {DEFAULT_PORT}"
                f" local {underlay} remote {remote} dev eth0",
                f"addr add {overlay}/24 dev vx0",
                "link set vx0 up",
            ])  # fmt: skip

    def close(self) -> None:
        for name in reversed(self.namespaces):
            netns.delete(name)


def floor_samples(samples: int, seconds: float) -> dict[str, list[float]]:
    floor = Floor()
    out: dict[str, list[float]] = {"routed": [], "vxlan": []}
    try:
        floor.build()
        for k in range(samples):
            for path in list(out)[:: 1 if k % 2 == 0 else -1]:
                address = Floor.ADDRESSES["b"][0 if path == "routed" else 1]
                out[path].append(tcp_gbps(floor.ns("b"), floor.ns("a"), address, seconds))
    finally:
        floor.close()
    return out


# -- report -------------------------------------------------------------------------------------


def run(samples: int, seconds: float) -> Result:
    spec = load_lab(lab_file(), "bench lab")  # a refused lab file fails before the floor runs
    floor = floor_samples(samples, seconds)
    with tempfile.TemporaryDirectory(prefix="calico-bench-vxlan-") as tmp:
        calico = calico_samples(spec, samples, seconds, Path(tmp))
    return Result(calico["routed"], calico["vxlan"], floor["routed"], floor["vxlan"])


def format_result(r: Result) -> str:
    med = statistics.median
    rows = [f"{'path':<16} {'calico':>12} {'floor':>12} {'ratio':>7}"]
    for name, calico, floor in (("routed (native)", r.routed, r.floor_routed),
                                ("VXLAN", r.vxlan, r.floor_vxlan)):  # fmt: skip
        rows.append(f"{name:<16} {med(calico):>7.2f} Gb/s {med(floor):>7.2f} Gb/s"
                    f" {med(calico) / med(floor):>7.2f}")  # fmt: skip
    calico_ratio = med(r.vxlan) / med(r.routed)
    floor_ratio = med(r.floor_vxlan) / med(r.floor_routed)
    rows.append(f"{'VXLAN / routed':<16} {calico_ratio:>12.2f} {floor_ratio:>12.2f}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.samples < 1 or args.seconds <= 0:
        parser.error("--samples must be >= 1 and --seconds > 0")
    result = run(args.samples, args.seconds)
    print(f"VXLAN throughput: iperf3 TCP workload -> workload on another host of one subnet, "
          f"{args.seconds:g}s x {args.samples} samples each, medians; floor: plain namespaces "
          f"(native, and a hand-made VXLAN pair)")  # fmt: skip
    print(format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
