"""The border router: Debian's FRR (zebra + bgpd) run inside the router's namespace.

Everything FRR uses is per lab: config files, pid files, the zebra API socket and the vty
sockets live in the router's directory (owned by the `frr` user the daemons drop to), so no
global /etc/frr or /var/run/frr state is used. The router peers over eBGP with every host,
learns the pool blocks the hosts advertise, and advertises the network behind it. The L3
fabric's ToRs and spines are the same daemons with their own configs (see `calico.lab.fabric`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from calico.lab import netns, procs
from calico.lab.procs import Proc

FRR_DIR = Path("/usr/lib/frr")
FRR_USER = "frr"
GRACEFUL_RESTART = (" bgp graceful-restart", " bgp graceful-restart preserve-fw-state")
# Routes with their nexthops inline, not kernel nexthop objects: the kernel deletes a nexthop
# object whose link loses carrier, and zebra 8.4 does not notice; seen after a spine came back,
# the ToRs' routes stayed on one spine while zebra showed both installed.
ZEBRA_CONFIG = "no zebra nexthop kernel enable\n"


@dataclass(frozen=True, slots=True)
class Neighbor:
    address: str
    as_number: int
    rr_client: bool = False  # an iBGP client of this router as route reflector
    next_hop_self: bool = False  # routes learnt over eBGP go to it with this router as next hop
    password: str | None = None  # TCP MD5
    update_source: str | None = None  # the local address of the session (a loopback)


def bgpd_config(
    name: str,
    as_number: int,
    router_id: str,
    neighbors: list[Neighbor],
    networks: list[str],
    timers: tuple[int, int] | None = None,
    graceful_restart: bool = False,
) -> str:
    """bgpd.conf: a session to each neighbor (v4 and v6 address families), networks
    advertised; `timers` are (keepalive, hold) seconds, and with them (the fabric's routers)
    changes go out at once (FRR's datacenter default; its traditional one holds eBGP updates
    back for up to 30 s). `graceful_restart`: a restarted bgpd finds its routes kept by zebra
    and its peers (RFC 4724), as the border's is."""
    lines = [
        f"hostname {name}",
        "!",
        f"router bgp {as_number}",
        f" bgp router-id {router_id}",
        " no bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast",
        " bgp bestpath as-path multipath-relax",
        *([f" timers bgp {timers[0]} {timers[1]}"] if timers else []),
        *(GRACEFUL_RESTART if graceful_restart else ()),
    ]
    for n in neighbors:
        lines += [
            f" neighbor {n.address} remote-as {n.as_number}",
            f" neighbor {n.address} timers connect 2",
            *([f" neighbor {n.address} advertisement-interval 0"] if timers else []),
            *([f" neighbor {n.address} password {n.password}"] if n.password else []),
        ]
        if n.update_source:  # eBGP from a loopback: the peer is not on a connected network
            lines += [
                f" neighbor {n.address} update-source {n.update_source}",
                f" neighbor {n.address} disable-connected-check",
            ]
    for family, version in (("ipv4", 4), ("ipv6", 6)):
        members = [n for n in neighbors if (":" in n.address) == (version == 6)]
        nets = [net for net in networks if (":" in net) == (version == 6)]
        if not members and not nets:
            continue
        lines.append(f" address-family {family} unicast")
        lines += [f"  network {net}" for net in nets]
        for n in members:
            lines.append(f"  neighbor {n.address} activate")
            lines += [f"  neighbor {n.address} route-reflector-client"] if n.rr_client else []
            lines += [f"  neighbor {n.address} next-hop-self"] if n.next_hop_self else []
        lines += ["  maximum-paths 8", " exit-address-family"]
    return "\n".join([*lines, "!", ""])


def start(directory: Path, ns: str, config: str, name: str) -> tuple[Proc, Proc]:
    """Start zebra, then bgpd, as the `frr` user with every path under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.parent.chmod(0o755)
    shutil.chown(directory, FRR_USER, FRR_USER)
    (directory / "zebra.conf").write_text(f"hostname {name}\n{ZEBRA_CONFIG}")
    (directory / "bgpd.conf").write_text(config)
    zebra = _daemon(directory, ns, "zebra", [])
    _wait_for(directory / "zserv.api", zebra, "zebra")
    return zebra, start_bgpd(directory, ns)


def start_bgpd(directory: Path, ns: str) -> Proc:
    """bgpd alone, on the config and zebra already there (also after bgpd was killed)."""
    (directory / "bgpd.vty").unlink(missing_ok=True)  # a killed bgpd leaves its socket
    bgpd = _daemon(directory, ns, "bgpd", [])
    _wait_for(directory / "bgpd.vty", bgpd, "bgpd")
    return bgpd


def _daemon(directory: Path, ns: str, daemon: str, extra: list[str]) -> Proc:
    argv = [
        str(FRR_DIR / daemon),
        *("-f", str(directory / f"{daemon}.conf"), "-i", str(directory / f"{daemon}.pid")),
        *("-z", str(directory / "zserv.api"), "--vty_socket", str(directory), "-P", "0"),
        *("--log", f"file:{directory / daemon}.log"),
        *extra,
    ]
    return procs.spawn(argv, directory / f"{daemon}.out", netns=ns)


def _wait_for(path: Path, proc: Proc, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if not procs.alive(proc) or time.monotonic() > deadline:
            out = (path.parent / f"{what}.out").read_text(errors="replace").strip()
            raise RuntimeError(f"{what} did not start: {out[-300:] or 'no output'}")
        time.sleep(0.05)


def vtysh_argv(directory: Path, args: Sequence[str]) -> list[str]:
    """vtysh talking to the router whose files are in `directory`."""
    return ["vtysh", "--vty_socket", str(directory), "--config_dir", str(directory), *args]


def vtysh(directory: Path, ns: str, command: str) -> str:
    return netns.in_ns(ns, vtysh_argv(directory, ["-c", command])).stdout


def sessions(directory: Path, ns: str) -> dict[str, str]:
    """Neighbor address -> BGP state ("Established", "Active"...)."""
    out: dict[str, str] = {}
    for family in ("ipv4", "ipv6"):
        text = vtysh(directory, ns, f"show bgp {family} unicast summary json")
        peers = json.loads(text or "{}").get("peers", {})
        out.update({addr: str(info.get("state", "?")) for addr, info in peers.items()})
    return out


def routes(directory: Path, ns: str, family: str = "ipv4") -> dict[str, list[str]]:
    """Prefix -> next hops of the best paths in the router's BGP table."""
    data = json.loads(vtysh(directory, ns, f"show bgp {family} unicast json") or "{}")
    table: dict[str, list[str]] = {}
    for prefix, paths in data.get("routes", {}).items():
        hops = [h.get("ip", "") for p in paths if p.get("valid") for h in p.get("nexthops", [])]
        table[prefix] = hops
    return table
