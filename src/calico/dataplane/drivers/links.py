"""Per-interface kernel settings Felix needs on workload interfaces (Calico's endpoint manager
`configureInterface`), plus the global forwarding switches.

Role: the endpoint manager declares which workload interfaces exist and how they are
configured; `apply()` writes what is missing in one batch. Inputs: `set_interface` /
`remove_interface`, `on_iface_state` (interface monitor), `resync()` (read back and repair).
Output: sysctl writes, nothing else, through one of two doors: `SysctlCommands` (one `sysctl`
run per read or write batch, through a CommandRunner: any namespace, and what a dry run
records) or `SysctlFiles` (the /proc/sys files of the calling thread's network namespace:
Felix inside the namespace it manages). Felix uses the files: under endpoint churn the
`sysctl -w` run of each apply was ~2 ms of CPU in the program, 3-4 applies a second
(bench/churn_rate.py), against microseconds a file; Calico's Felix writes the files too.

Why these settings: workloads route everything to a gateway nobody owns (169.254.1.1, or the
host side's link-local fe80::ecee:eeff:feee:eeee); proxy ARP with no delay makes the host
answer for it (the kernel answers only for addresses it routes via another interface).
IPv6 needs no proxy NDP entry for that gateway: the host side's MAC is ee:ee:ee:ee:ee:ee, so
the host owns that link-local address and answers itself (the kernel test proves it);
`proxy_ndp=1` is still set as Calico does, for VM gateways. Strict rp_filter stops spoofed
sources unless the endpoint allows them; route_localnet allows NAT to the host's 127/8;
`accept_ra=0` so a workload cannot inject routes into the host.

Invariants: only oper-up interfaces are written (the kernel drops an interface's settings
with the interface, so they are rewritten whenever it comes up again). Sysctl names use the
dotted form with an interface name's own dots written as '/' (`net.ipv4.conf.eth0/100.…`),
which is also how sysctl prints them back. Not thread-safe: dataplane thread only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Protocol

from calico.programs import CommandRunner

_log = logging.getLogger(__name__)


def interface_sysctls(iface: str, spoofing_allowed: bool, ipv6: bool) -> dict[str, str]:
    """The sysctls (name -> value) of one workload interface."""
    name = iface.replace(".", "/")
    wanted = {
        f"net.ipv4.conf.{name}.proxy_arp": "1",
        f"net.ipv4.neigh.{name}.proxy_delay": "0",
        f"net.ipv4.conf.{name}.forwarding": "1",
        f"net.ipv4.conf.{name}.rp_filter": "0" if spoofing_allowed else "1",
        f"net.ipv4.conf.{name}.route_localnet": "1",
    }
    if ipv6:
        wanted |= {
            f"net.ipv6.conf.{name}.proxy_ndp": "1",
            f"net.ipv6.conf.{name}.forwarding": "1",
            f"net.ipv6.conf.{name}.accept_ra": "0",
        }
    return wanted


def global_sysctls(ipv6: bool) -> dict[str, str]:
    wanted = {"net.ipv4.ip_forward": "1"}
    if ipv6:
        wanted["net.ipv6.conf.all.forwarding"] = "1"
    return wanted


def parse_sysctl_output(out: str) -> dict[str, str]:
    """`name = value` lines, as `sysctl NAME...` prints them, into a mapping."""
    values = {}
    for line in out.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            values[name] = value.strip()
    return values


class Sysctls(Protocol):
    def read(self, names: Sequence[str]) -> dict[str, str]:
        """The values of those of `names` that can be read."""
        ...

    def write(self, values: Mapping[str, str]) -> None:
        """Writes every value it can; then raises if any could not be written."""
        ...


class SysctlCommands:
    """Sysctls through the `sysctl` program: one run per read or write batch."""

    def __init__(self, runner: CommandRunner) -> None:
        self._runner = runner

    def read(self, names: Sequence[str]) -> dict[str, str]:
        return parse_sysctl_output(self._runner.run(["sysctl", *names], check=False).stdout)

    def write(self, values: Mapping[str, str]) -> None:
        self._runner.run(["sysctl", "-w", *(f"{k}={v}" for k, v in values.items())])


class SysctlWriteFailed(OSError):
    pass


class SysctlFiles:
    """Sysctls as /proc/sys files, opened by the calling thread, so in its network
    namespace: only for a process (Felix) that runs inside the namespace it manages."""

    def __init__(self, root: str = "/proc/sys") -> None:
        self._root = root

    def read(self, names: Sequence[str]) -> dict[str, str]:
        values = {}
        for name in names:
            try:
                with open(self._path(name), encoding="ascii") as f:
                    values[name] = f.read().strip()
            except OSError:
                continue  # gone with its interface: counts as differing
        return values

    def write(self, values: Mapping[str, str]) -> None:
        failed = []
        for name, value in values.items():
            try:
                fd = os.open(self._path(name), os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, value.encode("ascii"))
                finally:
                    os.close(fd)
            except OSError as exc:
                failed.append(f"{name}={value}: {exc.strerror}")
        if failed:
            raise SysctlWriteFailed(f"sysctl writes failed: {'; '.join(failed)}")

    def _path(self, name: str) -> str:
        # `net.ipv4.conf.eth0/100.rp_filter` is net/ipv4/conf/eth0.100/rp_filter
        return f"{self._root}/{name.translate(_NAME_TO_PATH)}"


_NAME_TO_PATH = str.maketrans("./", "/.")


class LinkConfigurator:
    """Keeps the sysctls of workload interfaces (and the global forwarding switches) set."""

    def __init__(self, sysctls: Sysctls, *, ipv6: bool = True) -> None:
        self._sysctls = sysctls
        self._globals = global_sysctls(ipv6)
        self._desired: dict[str, dict[str, str]] = {}
        self._up: set[str] = set()
        self._pending: set[str] = set()  # interfaces whose settings must be (re)written
        self._globals_pending = True
        # The first apply reads before it writes, so a restarted Felix (and the drift check,
        # whose writes are the drift) writes only what differs.
        self._need_read = True

    @property
    def needs_apply(self) -> bool:
        return self._need_read or self._globals_pending or bool(self._pending & self._up)

    def set_interface(self, iface: str, spoofing_allowed: bool, ipv6: bool) -> None:
        wanted = interface_sysctls(iface, spoofing_allowed, ipv6)
        if self._desired.get(iface) != wanted:
            self._desired[iface] = wanted
            self._pending.add(iface)

    def remove_interface(self, iface: str) -> None:
        """Forgets `iface`; its settings go with the interface when the CNI deletes it."""
        self._desired.pop(iface, None)
        self._pending.discard(iface)

    def on_iface_state(self, iface: str, up: bool, index: int) -> None:
        """Interface monitor callback; `index` 0 means the interface no longer exists."""
        if up and index:
            if iface not in self._up and iface in self._desired:
                self._pending.add(iface)
            self._up.add(iface)
        else:
            self._up.discard(iface)

    def resync(self) -> None:
        """Makes the next apply() read every setting back and repair what differs."""
        self._need_read = True

    def apply(self) -> None:
        """Writes what is pending for up interfaces in one batch. On failure it raises and
        keeps everything pending for the next apply()."""
        if self._need_read:
            self._read_back()
        ready = sorted(self._pending & self._up)
        writes = dict(self._globals) if self._globals_pending else {}
        for iface in ready:
            writes |= self._desired[iface]
        if writes:
            self._sysctls.write(writes)
            # Logged: files leave no command line to count (bench/felix_restart.py's writes).
            where = ["global"] if self._globals_pending else []
            _log.info("wrote %d sysctls (%s)", len(writes), " ".join(where + ready))
        self._globals_pending = False
        self._pending.difference_update(ready)

    def _read_back(self) -> None:
        """One read of everything we own; what differs becomes pending. A name that cannot
        be read (interface just vanished) counts as differing."""
        configured = sorted(set(self._desired) & self._up)
        names = [*self._globals, *(n for iface in configured for n in self._desired[iface])]
        have = self._sysctls.read(names)
        self._globals_pending = _differs(self._globals, have)
        self._pending.difference_update(configured)
        self._pending.update(i for i in configured if _differs(self._desired[i], have))
        self._need_read = False


def _differs(wanted: Mapping[str, str], have: Mapping[str, str]) -> bool:
    return any(have.get(name) != value for name, value in wanted.items())
