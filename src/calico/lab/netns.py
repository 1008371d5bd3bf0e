"""Kernel plumbing for the lab: network namespaces, veths, addresses and commands inside them.

Only namespaces the lab created are touched: links are created inside a lab namespace with
their peer born in another lab namespace, never in the root namespace. Commands run with
`ip -n NS` (links, addresses, routes) or `ip netns exec NS` (anything else).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from calico import programs

NETNS_DIR = Path("/run/netns")


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    stdin: str | None = None,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> programs.CompletedProcess[str]:
    """programs.run; a command that times out, or exits non-zero under `check`, raises
    programs.CommandFailed quoting it and its stderr."""
    try:
        return programs.run(argv, stdin=stdin, timeout=timeout, env=env, check=check)
    except programs.TimeoutExpired:
        raise programs.CommandFailed(argv, -1, "", f"no answer within {timeout:.0f}s") from None


def in_ns(ns: str, argv: Sequence[str], **kwargs: object) -> programs.CompletedProcess[str]:
    """Run `argv` inside namespace `ns`."""
    return run(["ip", "netns", "exec", ns, *argv], **kwargs)  # type: ignore[arg-type]


def ip(ns: str, *args: str) -> None:
    run(["ip", "-n", ns, *args])


def ip_batch(ns: str, commands: Sequence[str]) -> None:
    """Several `ip` commands in one process (`ip -n NS -batch -`)."""
    if commands:
        run(["ip", "-n", ns, "-batch", "-"], stdin="\n".join(commands) + "\n")


def exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def add(ns: str) -> None:
    """Create `ns` with loopback up."""
    run(["ip", "netns", "add", ns])
    ip(ns, "link", "set", "lo", "up")


def delete(ns: str) -> None:
    if exists(ns):
        run(["ip", "netns", "del", ns], check=False)


def pids(ns: str) -> list[int]:
    """Every process whose network namespace is `ns`."""
    if not exists(ns):
        return []
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str, mac_b: str | None = None) -> None:
    """A veth pair: `if_a` in ns_a, `if_b` in ns_b, both up."""
    peer = ["peer", "name", if_b, *(["address", mac_b] if mac_b else []), "netns", ns_b]
    ip(ns_a, "link", "add", if_a, "type", "veth", *peer)
    ip(ns_a, "link", "set", if_a, "up")
    ip(ns_b, "link", "set", if_b, "up")


def address_commands(dev: str, addresses: Sequence[str]) -> list[str]:
    """`ip -batch` lines adding addresses (IPv6 without duplicate address detection)."""
    return [f"addr add {a} dev {dev}" + (" nodad" if ":" in a else "") for a in addresses]


def bridge_commands(bridge: str, addresses: Sequence[str]) -> list[str]:
    """`ip -batch` lines creating a bridge (no multicast snooping) with `addresses`, up."""
    return [
        f"link add {bridge} type bridge mcast_snooping 0",
        f"link set {bridge} up",
        *address_commands(bridge, addresses),
    ]


def sysctl(ns: str, settings: Mapping[str, str]) -> None:
    in_ns(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())])
