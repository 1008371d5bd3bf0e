"""Text renderings of a lab's status and connectivity matrix (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Matrix:
    sources: Sequence[str]
    targets: Sequence[str]
    cells: Mapping[tuple[str, str], bool | None]  # None: not probed (self, no port/address)
    label: str = ""


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def format_matrix(matrix: Matrix) -> str:
    """Rows are sources, columns targets: `ok`, `--` (blocked) or `.` (not probed)."""
    header = [f"from \\ to {matrix.label}".strip(), *matrix.targets]
    rows = [header]
    for src in matrix.sources:
        row = [src]
        for dst in matrix.targets:
            cell = matrix.cells.get((src, dst))
            row.append("." if cell is None else ("ok" if cell else "--"))
        rows.append(row)
    return _table(rows)


def _sessions(sessions: list[dict[str, str]]) -> str:
    """ "3/3 Established", plus the sessions that are not, with BIRD's info."""
    up = [s for s in sessions if s["info"].startswith("Established")]
    down = [f"{s['peer']}: {s['state']} {s['info']}".strip() for s in sessions if s not in up]
    return f"{len(up)}/{len(sessions)} Established" + "".join(f"; {d}" for d in down)


def _yes(flag: Any) -> str:
    return "-" if flag is None else "running" if flag else "DOWN"  # None: not expected


def _host_rows(hosts: list[dict[str, Any]]) -> list[list[str]]:
    racks = any("tor" in h for h in hosts)
    rows = [["HOST", "IPV4", "IPV6", "NODE", "FELIX", "BIRD", "BGP SESSIONS"]]
    rows[0] += ["TOR SESSION"] if racks else []
    for h in hosts:
        flags = [_yes(h["node"]), _yes(h["felix"]), _yes(h["bird"])]
        sessions = "-" if h["bird"] is None else _sessions(h["bgp"])  # None: no BIRD (vxlan)
        rows.append([h["name"], h["ipv4"], h["ipv6"] or "-", *flags, sessions])
        if racks:
            tor = h.get("tor")
            ipv6 = f", IPv6 {tor['info6']}" if tor and "info6" in tor else ""
            rows[-1].append(f"{tor['name']} {tor['info']}{ipv6}" if tor else "-")
    return rows


def _peer_states(peers: Mapping[str, str]) -> str:
    """ "2/3 BGP sessions Established; 198.18.0.1: Active" """
    if not peers:
        return "not running"
    up = sum(1 for state in peers.values() if state == "Established")
    down = "".join(f"; {p}: {s}" for p, s in peers.items() if s != "Established")
    return f"{up}/{len(peers)} BGP sessions Established{down}"


def _workload_rows(workloads: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["WORKLOAD", "HOST", "NAMESPACE", "IPV4", "IPV6", "PORTS"]]
    for w in workloads:
        addresses = [w["ipv4"] or "-", w["ipv6"] or "-"]
        rows.append([w["name"], w["host"], w["namespace"], *addresses, " ".join(w["ports"]) or "-"])
    return rows


def format_status(doc: Mapping[str, Any]) -> str:
    """`calico lab status`: a line about the lab, then hosts, workloads and the border."""
    state = "up" if doc["up"] else "not fully up"
    lines = [f"lab {doc['name']} ({state}), etcd {doc['etcd']}, state {doc['state_dir']}", ""]
    lines += [_table(_host_rows(doc["hosts"])), ""]
    if doc["workloads"]:
        lines += [_table(_workload_rows(doc["workloads"])), ""]
    border = doc.get("border")
    if border:
        lines.append(f"border router {border['name']}: {_peer_states(border['bgp'])}")
    router = doc.get("router")
    if router:
        n = router["vxlan_packets"]
        lines.append(f"router {router['name']} (plain, no BGP): UDP/4789 packets routed between"
                     f" racks {n['routed']}, bridged within racks {n['bridged']}")  # fmt: skip
    for router in doc.get("routers", []):
        what = f"{router['name']} ({router['role']}, AS {router['asNumber']})"
        lines.append(f"router {what}: {_peer_states(router['bgp'])}")
    return "\n".join(lines).rstrip()
