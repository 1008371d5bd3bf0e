"""The only door to the kernel: commands (iptables-restore, ipset, ip -batch, sysctl, run
through calico.programs) and netlink (pyroute2), optionally inside a named network namespace.

Felix itself runs inside the namespace it manages and uses `netns=None`; tests drive the
same code from outside with `netns="<name>"`, so no test ever programs the root namespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pyroute2 import IPRoute

from calico import programs


class CommandError(Exception):
    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.args_ = list(args)
        self.returncode = returncode
        self.stderr = stderr
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        super().__init__(f"{' '.join(args[:3])}... exited {returncode}: {detail}")


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class CommandRunner(Protocol):
    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult: ...


class Subprocess:
    """Runs commands directly, or inside `netns` via `ip netns exec`."""

    def __init__(self, netns: str | None = None, timeout: float = 60.0) -> None:
        self.netns = netns
        self.timeout = timeout

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        full = ["ip", "netns", "exec", self.netns, *args] if self.netns else list(args)
        try:
            proc = programs.run(full, stdin=stdin, timeout=self.timeout)
        except programs.TimeoutExpired:
            raise CommandError(full, -1, f"timed out after {self.timeout}s") from None
        except FileNotFoundError as exc:
            raise CommandError(full, -1, f"{exc.filename}: command not found") from None
        if check and proc.returncode != 0:
            raise CommandError(full, proc.returncode, proc.stderr)
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)


def open_netlink(netns: str | None = None) -> IPRoute:
    """A pyroute2 IPRoute socket in the current (or the named) network namespace."""
    return IPRoute(netns=netns) if netns else IPRoute()
