"""Per-interface kernel settings Felix needs on workload interfaces (Calico's endpoint manager
`configureInterface`), plus the global forwarding switches.

Role: the endpoint manager declares which workload interfaces exist and how they are
configured; `apply()` writes what is missing in ONE `sysctl -w` call. Inputs:
`set_interface` / `remove_interface`, `on_iface_state` (interface monitor), `resync()`
(read back and repair). Output: sysctl writes, nothing else.

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

from collections.abc import Mapping

from calico.programs import CommandRunner


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


class LinkConfigurator:
    """Keeps the sysctls of workload interfaces (and the global forwarding switches) set."""

    def __init__(self, runner: CommandRunner, *, ipv6: bool = True) -> None:
        self._runner = runner
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
        """Writes what is pending for up interfaces in one `sysctl -w`. On failure it raises
        and keeps everything pending for the next apply()."""
        if self._need_read:
            self._read_back()
        ready = sorted(self._pending & self._up)
        writes = dict(self._globals) if self._globals_pending else {}
        for iface in ready:
            writes |= self._desired[iface]
        if writes:
            self._runner.run(["sysctl", "-w", *(f"{k}={v}" for k, v in writes.items())])
        self._globals_pending = False
        self._pending.difference_update(ready)

    def _read_back(self) -> None:
        """One `sysctl NAME...` for everything we own; what differs becomes pending. A name
        that cannot be read (interface just vanished) counts as differing."""
        configured = sorted(set(self._desired) & self._up)
        names = [*self._globals, *(n for iface in configured for n in self._desired[iface])]
        have = parse_sysctl_output(self._runner.run(["sysctl", *names], check=False).stdout)
        self._globals_pending = _differs(self._globals, have)
        self._pending.difference_update(configured)
        self._pending.update(i for i in configured if _differs(self._desired[i], have))
        self._need_read = False


def _differs(wanted: Mapping[str, str], have: Mapping[str, str]) -> bool:
    return any(have.get(name) != value for name, value in wanted.items())
