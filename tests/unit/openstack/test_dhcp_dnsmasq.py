"""DnsmasqManager: start, SIGHUP, restart, stop and adoption, with a stand-in dnsmasq script
(records SIGHUPs, writes its pid file like dnsmasq) and recorded ns- interfaces."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from calico.openstack.dhcp.config import NetworkConfig, network_files
from calico.openstack.dhcp.dnsmasq import DnsmasqManager, owned_dnsmasq
from calico.testing import waiting

NET = "net-1"

FAKE_DNSMASQ = """#!/bin/sh
for arg in "$@"; do
    case "$arg" in --pid-file=*) pidfile="${arg#--pid-file=}" ;; esac
done
dir=$(dirname "$pidfile")
trap 'echo hup >> "$dir/hups"' HUP
trap 'exit 0' TERM
touch "$dir/started"
[ -e "$dir/no-pidfile" ] || echo $$ > "$pidfile"
while :; do sleep 0.02; done
"""


class FakeInterfaces:
    def __init__(self, existing: Iterable[str] = ()) -> None:
        self.present: dict[str, tuple[tuple[str, int], ...]] = dict.fromkeys(existing, ())
        self.removed: list[str] = []

    def ensure(self, name: str, addresses: Iterable[tuple[str, int]]) -> None:
        self.present[name] = tuple(addresses)

    def remove(self, name: str) -> None:
        self.present.pop(name, None)
        self.removed.append(name)

    def names(self) -> set[str]:
        return set(self.present)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    waiting.wait_until(predicate, timeout, what, interval=0.02)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    script = tmp_path / "bin" / "dnsmasq"
    script.parent.mkdir()
    script.write_text(FAKE_DNSMASQ)
    script.chmod(0o755)
    return script


@pytest.fixture
def managers(tmp_path: Path, fake: Path) -> Iterator[Callable[..., DnsmasqManager]]:
    made: list[DnsmasqManager] = []

    def make(interfaces: FakeInterfaces | None = None) -> DnsmasqManager:
        manager = DnsmasqManager(
            str(tmp_path / "dhcp"), dnsmasq=str(fake), interfaces=interfaces or FakeInterfaces()
        )
        made.append(manager)
        return manager

    yield make
    for manager in made:
        for pid in manager.running.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def config(base: str, args: tuple[str, ...] = ("--x",), hosts: str = "h1\n") -> NetworkConfig:
    files = network_files(base, NET)
    return NetworkConfig(
        network_id=NET,
        interface="ns-net-1",
        addresses=(("198.18.0.1", 24),),
        taps=("tapa",),
        args=(*args, f"--pid-file={files.pid}"),
        hosts=hosts,
        opts="o1\n",
        files=files,
    )


def hups(cfg: NetworkConfig) -> int:
    path = Path(cfg.files.directory, "hups")
    return len(path.read_text().splitlines()) if path.exists() else 0


def ready(cfg: NetworkConfig, pid: int) -> Callable[[], bool]:
    return lambda: (
        Path(cfg.files.pid).exists() and Path(cfg.files.pid).read_text().strip() == str(pid)
    )


def test_start_reload_restart_remove(managers: Callable[..., DnsmasqManager]) -> None:
    interfaces = FakeInterfaces()
    manager = managers(interfaces)
    cfg = config(manager.base_dir)
    assert manager.apply({NET: cfg})
    pid = manager.running[NET]
    wait_for(ready(cfg, pid), "the pid file")
    assert interfaces.present == {"ns-net-1": (("198.18.0.1", 24),)}
    assert Path(cfg.files.hosts).read_text() == "h1\n"
    assert Path(cfg.files.opts).read_text() == "o1\n"

    assert manager.apply({NET: cfg})  # no change: nothing happens
    assert manager.running[NET] == pid and hups(cfg) == 0

    reloaded = replace(cfg, hosts="h1\nh2\n")
    assert manager.apply({NET: reloaded})
    wait_for(lambda: hups(cfg) == 1, "a SIGHUP")
    assert manager.running[NET] == pid
    assert Path(cfg.files.hosts).read_text() == "h1\nh2\n"

    restarted = config(manager.base_dir, args=("--y",), hosts="h1\nh2\n")
    assert manager.apply({NET: restarted})
    assert manager.running[NET] != pid
    wait_for(lambda: not alive(pid), "the old dnsmasq to end")

    new_pid = manager.running[NET]
    assert manager.apply({})
    assert manager.running == {}
    wait_for(lambda: not alive(new_pid), "dnsmasq to stop")
    assert interfaces.removed == ["ns-net-1"]
    assert not Path(cfg.files.directory).exists()


def test_dead_dnsmasq_is_restarted(managers: Callable[..., DnsmasqManager]) -> None:
    manager = managers()
    cfg = config(manager.base_dir)
    manager.apply({NET: cfg})
    pid = manager.running[NET]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), "the kill")
    assert manager.apply({NET: cfg})
    assert manager.running[NET] != pid
    assert alive(manager.running[NET])


def test_reload_waits_until_dnsmasq_is_ready(managers: Callable[..., DnsmasqManager]) -> None:
    manager = managers()
    cfg = config(manager.base_dir)
    Path(cfg.files.directory).mkdir(parents=True)
    Path(cfg.files.directory, "no-pidfile").touch()  # the stand-in never becomes ready
    manager.apply({NET: cfg})
    pid = manager.running[NET]
    assert manager.apply({NET: replace(cfg, hosts="h2\n")}) is False  # no SIGHUP yet
    assert alive(pid) and hups(cfg) == 0
    wait_for(lambda: Path(cfg.files.directory, "started").exists(), "the handlers")
    Path(cfg.files.pid).write_text(f"{pid}\n")  # now it is ready
    assert manager.apply({NET: replace(cfg, hosts="h2\n")}) is True
    wait_for(lambda: hups(cfg) == 1, "the delayed SIGHUP")


def test_restarted_agent_adopts_or_replaces(managers: Callable[..., DnsmasqManager]) -> None:
    first = managers()
    cfg = config(first.base_dir)
    first.apply({NET: cfg})
    pid = first.running[NET]
    wait_for(ready(cfg, pid), "the pid file")
    assert owned_dnsmasq(cfg.files) == (pid, cfg.args)

    second = managers()  # the agent restarted; dnsmasq kept running
    second.adopt()
    assert second.running == {NET: pid}
    assert second.apply({NET: replace(cfg, hosts="h2\n")})
    wait_for(lambda: hups(cfg) == 1, "a SIGHUP to the adopted dnsmasq")
    assert second.running == {NET: pid}

    third = managers()
    third.adopt()
    changed = config(third.base_dir, args=("--z",))
    assert third.apply({NET: changed})
    wait_for(lambda: not alive(pid), "the adopted dnsmasq to be replaced")
    assert third.running[NET] != pid


def test_first_apply_removes_leftovers(managers: Callable[..., DnsmasqManager]) -> None:
    interfaces = FakeInterfaces(existing=["ns-old", "ns-net-1"])
    manager = managers(interfaces)
    stale = Path(manager.base_dir, "old-net")
    stale.mkdir(parents=True)
    (stale / "host").write_text("x\n")
    manager.apply({NET: config(manager.base_dir)})
    assert interfaces.removed == ["ns-old"]
    assert not stale.exists()
    assert set(interfaces.present) == {"ns-net-1"}


def test_stop_all(managers: Callable[..., DnsmasqManager]) -> None:
    interfaces = FakeInterfaces()
    manager = managers(interfaces)
    cfg = config(manager.base_dir)
    manager.apply({NET: cfg})
    pid = manager.running[NET]
    manager.stop_all()
    assert manager.running == {} and not alive(pid)
    assert interfaces.present == {}


def test_owned_dnsmasq_checks_the_process(tmp_path: Path) -> None:
    files = network_files(str(tmp_path), NET)
    Path(files.directory).mkdir()
    assert owned_dnsmasq(files) is None  # no pid file
    Path(files.pid).write_text(f"{os.getpid()}\n")
    assert owned_dnsmasq(files) is None  # a live PID, but not a dnsmasq with this pid file
    Path(files.pid).write_text("garbage")
    assert owned_dnsmasq(files) is None
