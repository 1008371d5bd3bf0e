"""The only door to the kernel: commands (iptables-restore, ipset, ip -batch, sysctl), run
through a `calico.programs.CommandRunner`, and netlink (pyroute2), optionally inside a named
network namespace.

Felix itself runs inside the namespace it manages and uses `netns=None`; tests drive the
same code from outside with `netns="<name>"` (and `programs.Runner(netns=...)`), so no test
ever programs the root namespace.
"""

from __future__ import annotations

from pyroute2 import IPRoute


def open_netlink(netns: str | None = None) -> IPRoute:
    """A pyroute2 IPRoute socket in the current (or the named) network namespace."""
    return IPRoute(netns=netns) if netns else IPRoute()
