"""dnsmasq processes, their files and the `ns-` interfaces they serve from.

`DnsmasqManager.apply(desired)` makes the host match a rendering of `config`: for each network
it ensures the `ns-` interface and its gateway addresses, writes the hosts and opts files
(atomically), then starts dnsmasq, restarts it when its command line changed (the set of taps
or subnets), or sends SIGHUP when only the files changed (dnsmasq re-reads
--dhcp-hostsfile/--dhcp-optsfile on SIGHUP). A network no longer wanted loses its dnsmasq, its
interface and its files. A dnsmasq that died is started again on the next apply. `apply` is
idempotent; the agent calls it after every change and periodically.

dnsmasq drops to user nobody after start and re-reads its files as nobody, so directories are
made 0755 and files 0644 (the agent warns when a parent of the run directory is closed).
Processes are signalled by PID only. dnsmasq runs in the foreground as the agent's child; one
left running by an earlier agent (found through its pid file, and only if /proc shows that it
is a dnsmasq using that pid file) is adopted when its command line is still right, so an agent
restart does not interrupt DHCP, and stopped otherwise.

The `ns-` interface is a dummy device, as networking-calico's; where the kernel has no dummy
driver an ifb device (also a carrier-up, ARP-less sink) stands in. Its addresses carry
`noprefixroute` (and `nodad` for IPv6): the subnet routes must stay with Felix's per-VM routes,
not point into a sink.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from calico import programs
from calico.openstack.dhcp.config import NS_PREFIX, NetworkConfig, NetworkFiles, network_files

log = logging.getLogger(__name__)

DNSMASQ = "/usr/sbin/dnsmasq"
STOP_TIMEOUT = 5.0
_IFA_F_NODAD = 0x02
_IFA_F_NOPREFIXROUTE = 0x200


class Interfaces(Protocol):
    def ensure(self, name: str, addresses: Iterable[tuple[str, int]]) -> None:
        """Create `name` if absent, set it up, give it exactly these addresses."""
        ...

    def remove(self, name: str) -> None: ...

    def names(self) -> set[str]:
        """The ns- interfaces this agent may have created."""
        ...


class NetlinkInterfaces:
    """`Interfaces` in the current network namespace, through netlink."""

    KINDS = ("dummy", "ifb")

    def __init__(self) -> None:
        self._kind: str | None = None  # the first kind the kernel accepted

    def ensure(self, name: str, addresses: Iterable[tuple[str, int]]) -> None:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=name)
            if found:
                kind = _link_kind(ipr, found[0])
                if kind not in self.KINDS:
                    raise OSError(errno.EEXIST, f"{name} exists and is a {kind or 'plain'} device")
            else:
                self._create(ipr, name)
                found = ipr.link_lookup(ifname=name)
            idx = int(found[0])
            ipr.link("set", index=idx, state="up")
            have = set()
            for msg in ipr.get_addr(index=idx):
                address = str(msg.get_attr("IFA_ADDRESS"))
                if not address.lower().startswith("fe80:"):
                    have.add((address, int(msg["prefixlen"])))
            want = set(addresses)
            for address, prefixlen in sorted(want - have):
                flags = _IFA_F_NOPREFIXROUTE | (_IFA_F_NODAD if ":" in address else 0)
                ipr.addr("add", index=idx, address=address, prefixlen=prefixlen, flags=flags)
            for address, prefixlen in sorted(have - want):
                ipr.addr("del", index=idx, address=address, prefixlen=prefixlen)

    def _create(self, ipr: IPRoute, name: str) -> None:
        kinds = (self._kind,) if self._kind else self.KINDS
        for kind in kinds:
            try:
                ipr.link("add", ifname=name, kind=kind)
            except NetlinkError as exc:
                if exc.code == errno.EOPNOTSUPP and kind != kinds[-1]:
                    log.warning("the kernel has no %s devices; trying the next kind", kind)
                    continue
                raise
            self._kind = kind
            return

    def remove(self, name: str) -> None:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=name)
            if found and _link_kind(ipr, found[0]) in self.KINDS:
                with contextlib.suppress(NetlinkError):  # gone meanwhile
                    ipr.link("del", index=found[0])

    def names(self) -> set[str]:
        with IPRoute() as ipr:
            out = set()
            for link in ipr.get_links():
                name = str(link.get_attr("IFLA_IFNAME"))
                if name.startswith(NS_PREFIX) and _link_kind(ipr, link["index"]) in self.KINDS:
                    out.add(name)
            return out


def _link_kind(ipr: IPRoute, index: int) -> str | None:
    links = ipr.get_links(index)
    info = links[0].get_attr("IFLA_LINKINFO") if links else None
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return str(kind) if kind else None


def dnsmasq_cmdline(pid: int) -> list[str] | None:
    """A live process's argv, or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None  # zombie, or a kernel thread
    return [arg.decode(errors="replace") for arg in raw.rstrip(b"\0").split(b"\0")]


def owned_dnsmasq(files: NetworkFiles) -> tuple[int, tuple[str, ...]] | None:
    """(pid, arguments) of the dnsmasq that runs with these files' pid file, if any."""
    try:
        pid = int(Path(files.pid).read_text().strip())
    except (OSError, ValueError):
        return None
    argv = dnsmasq_cmdline(pid) or []
    if f"--pid-file={files.pid}" not in argv:
        return None  # gone, or the PID now belongs to another process
    # The program is argv[0], or argv[1] when a script interpreter runs it.
    for i, arg in enumerate(argv[:2]):
        if os.path.basename(arg).startswith("dnsmasq"):
            return pid, tuple(argv[i + 1 :])
    return None


def _write_atomically(path: str, text: str) -> bool:
    """Write if different; True if the file changed."""
    target = Path(path)
    with contextlib.suppress(OSError):
        if target.read_text() == text:
            return False
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


@dataclass
class _Instance:
    network_id: str
    pid: int
    args: tuple[str, ...]
    files: NetworkFiles
    proc: programs.Popen[bytes] | None  # None: adopted from an earlier agent
    interface: str | None = None
    reload_pending: bool = False

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return dnsmasq_cmdline(self.pid) is not None

    def ready(self) -> bool:
        """dnsmasq writes its pid file after installing its signal handlers: until then a
        SIGHUP would kill it."""
        with contextlib.suppress(OSError, ValueError):
            return int(Path(self.files.pid).read_text().strip()) == self.pid
        return False


class DnsmasqManager:
    def __init__(
        self,
        base_dir: str,
        *,
        dnsmasq: str = DNSMASQ,
        interfaces: Interfaces | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_dir = base_dir
        self.dnsmasq = dnsmasq
        self.interfaces: Interfaces = interfaces or NetlinkInterfaces()
        self._clock = clock
        self._instances: dict[str, _Instance] = {}
        self._interfaces: dict[str, str] = {}  # network ID -> ns- interface we manage
        self._first_apply = True

    @property
    def running(self) -> dict[str, int]:
        """Network ID -> dnsmasq PID."""
        return {n: i.pid for n, i in self._instances.items()}

    def adopt(self) -> None:
        """Take over dnsmasqs an earlier agent left running (before the first apply)."""
        base = Path(self.base_dir)
        if not base.is_dir():
            return
        for entry in sorted(base.iterdir()):
            if not entry.is_dir():
                continue
            files = network_files(self.base_dir, entry.name)
            found = owned_dnsmasq(files)
            if found:
                pid, args = found
                log.info("found dnsmasq %d of network %s from an earlier run", pid, entry.name)
                self._instances[entry.name] = _Instance(entry.name, pid, args, files, None)

    def apply(self, desired: Mapping[str, NetworkConfig]) -> bool:
        """Make every network's dnsmasq match `desired`; False if something must be retried."""
        ok = True
        for network_id in sorted((set(self._instances) | set(self._interfaces)) - set(desired)):
            try:
                self._remove_network(network_id)
            except (OSError, NetlinkError) as exc:
                log.error("network %s: removing its DHCP service failed: %s", network_id, exc)
                ok = False
        if self._first_apply:
            ok = self._remove_leftovers(desired) and ok
            self._first_apply = False
        for network_id, config in sorted(desired.items()):
            try:
                ok = self._apply_network(config) and ok
            except (OSError, NetlinkError, programs.SubprocessError) as exc:
                log.error("network %s: configuring dnsmasq failed: %s", network_id, exc)
                ok = False
        return ok

    def stop_all(self) -> None:
        """Stop every dnsmasq and remove what this agent created (on SIGTERM)."""
        for network_id in sorted(set(self._instances) | set(self._interfaces)):
            try:
                self._remove_network(network_id)
            except (OSError, NetlinkError) as exc:
                log.error("network %s: clean-up failed: %s", network_id, exc)

    # -- one network ----------------------------------------------------------------------

    def _apply_network(self, config: NetworkConfig) -> bool:
        network_id = config.network_id
        old_iface = self._interfaces.get(network_id)
        if old_iface and old_iface != config.interface:
            self.interfaces.remove(old_iface)
        self.interfaces.ensure(config.interface, config.addresses)
        self._interfaces[network_id] = config.interface
        directory = Path(config.files.directory)
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)  # dnsmasq re-reads the files as user nobody
        changed = _write_atomically(config.files.hosts, config.hosts)
        changed = _write_atomically(config.files.opts, config.opts) or changed
        instance = self._instances.get(network_id)
        if instance is not None and not instance.alive():
            code = instance.proc.returncode if instance.proc else None
            log.warning(
                "network %s: dnsmasq %d exited (%s); restarting", network_id, instance.pid, code
            )
            del self._instances[network_id]
            instance = None
        if instance is None:
            self._start(config)
            return True
        if instance.args != config.args:
            log.info("network %s: dnsmasq arguments changed; restarting", network_id)
            self._stop(instance)
            del self._instances[network_id]
            self._start(config)
            return True
        if changed or instance.reload_pending:
            if not instance.ready():
                instance.reload_pending = True
                return False  # retried on the next apply
            log.info(
                "network %s: hosts/opts changed; reloading dnsmasq %d", network_id, instance.pid
            )
            os.kill(instance.pid, signal.SIGHUP)
            instance.reload_pending = False
        return True

    def _start(self, config: NetworkConfig) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(config.files.pid)  # readiness is "the pid file names the new process"
        argv = [self.dnsmasq, *config.args]
        proc = programs.start(argv, stdout=programs.DEVNULL)
        log.info(
            "network %s: started dnsmasq %d on %s for %s",
            config.network_id,
            proc.pid,
            config.interface,
            ",".join(config.taps),
        )
        self._instances[config.network_id] = _Instance(
            config.network_id, proc.pid, config.args, config.files, proc, config.interface
        )

    def _stop(self, instance: _Instance) -> None:
        if not instance.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(instance.pid, signal.SIGTERM)
        deadline = self._clock() + STOP_TIMEOUT
        while instance.alive() and self._clock() < deadline:
            time.sleep(0.05)
        if instance.alive():
            log.warning("dnsmasq %d ignored SIGTERM; killing it", instance.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(instance.pid, signal.SIGKILL)
            if instance.proc is not None:
                instance.proc.wait(timeout=STOP_TIMEOUT)
        log.info("network %s: stopped dnsmasq %d", instance.network_id, instance.pid)

    def _remove_network(self, network_id: str) -> None:
        instance = self._instances.pop(network_id, None)
        if instance is not None:
            self._stop(instance)
        iface = self._interfaces.pop(network_id, None)
        if iface:
            self.interfaces.remove(iface)
        shutil.rmtree(network_files(self.base_dir, network_id).directory, ignore_errors=True)

    def _remove_leftovers(self, desired: Mapping[str, NetworkConfig]) -> bool:
        """After a restart: ns- interfaces and file directories no wanted network uses."""
        ok = True
        wanted_ifaces = {c.interface for c in desired.values()}
        try:
            for name in sorted(self.interfaces.names() - wanted_ifaces):
                log.info("removing leftover interface %s", name)
                self.interfaces.remove(name)
        except (OSError, NetlinkError) as exc:
            log.error("removing leftover ns- interfaces failed: %s", exc)
            ok = False
        base = Path(self.base_dir)
        if base.is_dir():
            for entry in base.iterdir():
                if entry.is_dir() and entry.name not in desired:
                    shutil.rmtree(entry, ignore_errors=True)
        return ok
