"""LinkConfigurator against a fake sysctl that behaves like procps: writes and reads what
exists, reports (and skips) names that do not, exits 1 if any failed."""

from __future__ import annotations

import pytest

from calico.dataplane.drivers.links import LinkConfigurator, SysctlCommands, interface_sysctls
from calico.programs import CommandFailed
from calico.testing.dataplane import FakeSysctl


@pytest.fixture
def sysctl() -> FakeSysctl:
    fake = FakeSysctl()
    for iface in ("cali1", "cali.x2", "eth0"):
        fake.add_iface(iface)
    return fake


def test_interface_sysctls_cover_both_families_and_write_dots_as_slashes() -> None:
    assert interface_sysctls("cali.x2", spoofing_allowed=True, ipv6=True) == {
        "net.ipv4.conf.cali/x2.proxy_arp": "1",
        "net.ipv4.neigh.cali/x2.proxy_delay": "0",
        "net.ipv4.conf.cali/x2.forwarding": "1",
        "net.ipv4.conf.cali/x2.rp_filter": "0",
        "net.ipv4.conf.cali/x2.route_localnet": "1",
        "net.ipv6.conf.cali/x2.proxy_ndp": "1",
        "net.ipv6.conf.cali/x2.forwarding": "1",
        "net.ipv6.conf.cali/x2.accept_ra": "0",
    }
    v4_only = interface_sysctls("cali1", spoofing_allowed=False, ipv6=False)
    assert v4_only["net.ipv4.conf.cali1.rp_filter"] == "1"
    assert not any(k.startswith("net.ipv6") for k in v4_only)


def test_one_sysctl_call_per_apply_for_up_interfaces_only(
    sysctl: FakeSysctl, caplog: pytest.LogCaptureFixture
) -> None:
    links = LinkConfigurator(SysctlCommands(sysctl))
    links.set_interface("cali1", spoofing_allowed=False, ipv6=True)
    links.set_interface("cali.x2", spoofing_allowed=True, ipv6=False)
    links.on_iface_state("cali1", True, 5)
    with caplog.at_level("INFO", logger="calico.dataplane.drivers.links"):
        links.apply()
    # Logged for bench/felix_restart.py, which counts a restart's writes.
    assert "wrote 10 sysctls (global cali1)" in caplog.messages
    assert "-w" not in sysctl.calls[0]  # the first apply reads before it writes
    assert len(sysctl.calls) == 2 and sysctl.calls[1][:2] == ["sysctl", "-w"]
    assert sysctl.values["net.ipv4.ip_forward"] == "1"
    assert sysctl.values["net.ipv6.conf.all.forwarding"] == "1"
    assert sysctl.values["net.ipv4.conf.cali1.proxy_arp"] == "1"
    assert sysctl.values["net.ipv6.conf.cali1.accept_ra"] == "0"
    assert sysctl.values["net.ipv4.conf.cali/x2.proxy_arp"] == "0"  # not up yet
    links.on_iface_state("cali.x2", True, 6)
    links.apply()
    assert sysctl.calls[2] == ["sysctl", "-w"] + [
        f"{k}={v}" for k, v in interface_sysctls("cali.x2", True, False).items()
    ]
    assert not links.needs_apply
    links.apply()
    assert len(sysctl.calls) == 3  # nothing left to write


def test_a_restart_with_everything_set_writes_nothing(sysctl: FakeSysctl) -> None:
    first = LinkConfigurator(SysctlCommands(sysctl))
    first.set_interface("cali1", spoofing_allowed=False, ipv6=True)
    first.on_iface_state("cali1", True, 5)
    first.apply()
    sysctl.calls.clear()
    restarted = LinkConfigurator(SysctlCommands(sysctl))
    restarted.set_interface("cali1", spoofing_allowed=False, ipv6=True)
    restarted.on_iface_state("cali1", True, 5)
    restarted.apply()
    assert len(sysctl.calls) == 1 and "-w" not in sysctl.calls[0]
    sysctl.values["net.ipv4.conf.cali1.proxy_arp"] = "0"
    again = LinkConfigurator(SysctlCommands(sysctl))
    again.set_interface("cali1", spoofing_allowed=False, ipv6=True)
    again.on_iface_state("cali1", True, 5)
    again.apply()
    assert sysctl.calls[-1][:2] == ["sysctl", "-w"]
    assert sysctl.values["net.ipv4.conf.cali1.proxy_arp"] == "1"


def test_settings_are_rewritten_when_an_interface_comes_back(sysctl: FakeSysctl) -> None:
    links = LinkConfigurator(SysctlCommands(sysctl), ipv6=False)
    links.set_interface("cali1", spoofing_allowed=False, ipv6=False)
    links.on_iface_state("cali1", True, 5)
    links.apply()
    links.on_iface_state("cali1", False, 0)
    sysctl.del_iface("cali1")
    sysctl.add_iface("cali1")  # recreated with kernel defaults
    links.on_iface_state("cali1", True, 9)
    links.apply()
    assert sysctl.values["net.ipv4.conf.cali1.proxy_arp"] == "1"
    assert "net.ipv6.conf.all.forwarding=1" not in sysctl.calls[1]


def test_resync_reads_back_and_repairs_only_what_differs(sysctl: FakeSysctl) -> None:
    links = LinkConfigurator(SysctlCommands(sysctl))
    for iface in ("cali1", "cali.x2"):
        links.set_interface(iface, spoofing_allowed=False, ipv6=True)
        links.on_iface_state(iface, True, 5)
    links.apply()
    sysctl.values["net.ipv4.conf.cali/x2.proxy_arp"] = "0"
    sysctl.calls.clear()
    links.resync()
    links.apply()
    assert sysctl.calls[0][0] == "sysctl" and sysctl.calls[0][1] != "-w"  # one read
    assert sysctl.calls[1] == ["sysctl", "-w"] + [
        f"{k}={v}" for k, v in interface_sysctls("cali.x2", False, True).items()
    ]
    assert sysctl.values["net.ipv4.conf.cali/x2.proxy_arp"] == "1"


def test_a_failed_write_raises_and_stays_pending(sysctl: FakeSysctl) -> None:
    links = LinkConfigurator(SysctlCommands(sysctl))
    links.set_interface("cali9", spoofing_allowed=False, ipv6=True)  # vanished meanwhile
    links.on_iface_state("cali9", True, 7)
    with pytest.raises(CommandFailed):
        links.apply()
    assert links.needs_apply
    links.on_iface_state("cali9", False, 0)
    links.remove_interface("cali9")
    links.apply()
    assert sysctl.values["net.ipv4.ip_forward"] == "1"
    assert not links.needs_apply
