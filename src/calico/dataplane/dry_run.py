"""Felix's dataplane with its kernel writes recorded instead of made: the drift check.

Felix's drivers read the kernel, compare it with what the datastore asks for and write only
the difference (a restarted Felix with nothing changed writes nothing). So the writes of one
apply, caught here, are exactly the drift: what the kernel holds that Felix would change.
Reads go to the kernel; every other command is recorded and answered with success, and the
route tables' netlink writes are recorded the same way. A command not known to be a read
counts as a write: a dry run must never change the host.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from calico.programs import CommandResult, CommandRunner, name_of

_READ_VERBS = frozenset({"show", "list", "get", "save"})


@dataclass(frozen=True, slots=True)
class Write:
    argv: tuple[str, ...]
    stdin: str = ""


def is_read(args: Sequence[str], stdin: str | None) -> bool:
    """Whether a command the dataplane runs only reads the kernel."""
    name = name_of(args[0])
    rest = list(args[1:])
    if name.endswith("tables-save") or (name.endswith("-save") and "tables" in name):
        return True
    if name == "ipset":
        return bool(rest) and rest[0] in ("save", "list")
    if name == "sysctl":
        return "-w" not in rest
    if name in ("ip", "bridge"):
        if "-batch" in rest:
            lines = [ln.split() for ln in (stdin or "").splitlines() if ln.strip()]
            return all(len(ln) > 1 and ln[1] in _READ_VERBS for ln in lines)
        words = [a for a in rest if not a.startswith("-")]
        return len(words) > 1 and words[1] in _READ_VERBS
    if name == "conntrack":
        return "--delete" not in rest and "-D" not in rest
    return False


class DryRunRunner:
    """A CommandRunner that runs reads and records writes; keeps the last output of each
    read, so a report can show the kernel side of the difference."""

    def __init__(self, runner: CommandRunner) -> None:
        self._runner = runner
        self._lock = threading.Lock()
        self.writes: list[Write] = []
        self.reads: dict[tuple[str, ...], str] = {}

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        if is_read(args, stdin):
            result = self._runner.run(args, stdin=stdin, check=check)
            with self._lock:
                self.reads[(name_of(args[0]), *args[1:])] = result.stdout
            return result
        with self._lock:
            self.writes.append(Write(tuple(args), stdin or ""))
        return CommandResult(0, "", "")

    def record(self, write: Write) -> None:
        with self._lock:
            self.writes.append(write)


class DryRunNetlink:
    """A netlink socket whose route and neighbour writes are recorded (as `ip` would spell
    them); everything else (the interface monitor's dumps and events) goes to the kernel."""

    def __init__(self, netlink: Any, runner: DryRunRunner) -> None:
        self._netlink = netlink
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._netlink, name)

    def route(self, command: str, **kwargs: Any) -> object:
        return self._record("route", command, kwargs)

    def neigh(self, command: str, **kwargs: Any) -> object:
        return self._record("neigh", command, kwargs)

    def _record(self, what: str, command: str, kwargs: dict[str, Any]) -> object:
        family = "-6" if kwargs.get("family") == socket.AF_INET6 else "-4"
        dst = str(kwargs.get("dst", ""))
        if "dst_len" in kwargs:
            dst = f"{dst}/{kwargs['dst_len']}"
        words = [what, command, dst]
        index = kwargs.get("oif", kwargs.get("ifindex"))
        if index is not None:
            words += ["dev", _iface_name(int(index))]
        if kwargs.get("lladdr"):
            words += ["lladdr", str(kwargs["lladdr"])]
        self._runner.record(Write(("ip", family, "-batch", "-"), " ".join(words) + "\n"))
        return None


def dry_run_netlink(factory: Callable[[], Any], runner: DryRunRunner) -> Callable[[], Any]:
    return lambda: DryRunNetlink(factory(), runner)


def _iface_name(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return f"ifindex{index}"
