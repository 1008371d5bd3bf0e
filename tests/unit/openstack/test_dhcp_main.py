"""calico-dhcp-agent's command line: host name, refusal of bad configuration, file access."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from calico.openstack.dhcp.config import RenderOptions
from calico.openstack.dhcp.main import (
    hostname_of,
    main,
    parse_args,
    render_options,
    unreadable_ancestor,
)
from calico.openstack.settings import DhcpAgentOptions


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["--hostname", "cli"], {"NODENAME": "env"}, "cli"),
        ([], {"NODENAME": "env"}, "env"),
        ([], {}, socket.gethostname()),
    ],
)
def test_hostname(argv: list[str], environ: dict[str, str], expected: str) -> None:
    assert hostname_of(parse_args(argv), environ) == expected
    if expected == socket.gethostname():  # [DEFAULT] host comes after NODENAME
        assert hostname_of(parse_args(argv), environ, "compute-7") == "compute-7"
    else:
        assert hostname_of(parse_args(argv), environ, "compute-7") == expected


def test_render_options_follow_the_dhcp_agent_options() -> None:
    dhcp = DhcpAgentOptions(
        dhcp_lease_duration=600,
        dhcp_domain="example.org.",
        dhcp_broadcast_reply=True,
        dnsmasq_lease_max=100,
        dnsmasq_config_file="/etc/extra.conf",
        dhcp_renewal_time=300,
        dhcp_rebinding_time=500,
    )
    want = RenderOptions("/x", 600, False, "example.org", True, 100, "/etc/extra.conf", 300, 500)
    assert render_options("/x", parse_args([]), dhcp) == want
    # --lease-time wins over dhcp_lease_duration; without either, Neutron's default.
    assert render_options("/x", parse_args(["--lease-time", "900"]), dhcp).lease_seconds == 900
    assert render_options("/x", parse_args(["--debug"]), DhcpAgentOptions()) == RenderOptions(
        "/x", 86400, log_dhcp=True
    )


def test_config_files_repeat() -> None:
    args = parse_args(["--config-file", "a.conf", "--config-file", "b.conf"])
    assert args.config_file == ("a.conf", "b.conf")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[calico]\nopenstack_region = Bad Region\n", "openstack_region"),
        ("[calico]\netcd_port = 99999\n", "etcd_port"),
        (
            "[DEFAULT]\nforce_metadata = true\n",
            "[DEFAULT] force_metadata True: not supported: calico-dhcp-agent serves no metadata",
        ),
        ("[DEFAULT]\ndhcp_lease_duration = 30\n", "[DEFAULT] dhcp_lease_duration 30"),
    ],
)
def test_invalid_config_exits_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, message: str
) -> None:
    conf = tmp_path / "neutron.conf"
    conf.write_text(text)
    with pytest.raises(SystemExit) as exc:
        main(["--config-file", str(conf)], {"CALICO_RUN_DIR": str(tmp_path)})
    assert exc.value.code == 2
    assert message in caplog.text


def test_missing_config_file_exits_2(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--config-file", str(tmp_path / "nope.conf")], {})
    assert exc.value.code == 2 and "cannot read config file" in caplog.text


def test_short_lease_time_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--lease-time", "60"], {})
    assert exc.value.code == 2
    assert "'--lease-time': 60 is not in the range x>=120" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"], {})
    assert exc.value.code == 0
    assert "--config-file PATH" in capsys.readouterr().out


def test_unreadable_ancestor(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    inner = closed / "run" / "dhcp"
    inner.mkdir(parents=True)
    closed.chmod(0o700)
    (closed / "run").chmod(0o755)
    inner.chmod(0o755)
    assert unreadable_ancestor(str(inner)) == str(closed)
    closed.chmod(0o711)
    found = unreadable_ancestor(str(inner))  # pytest's own tmp directories may be closed
    assert found is None or not found.startswith(str(closed))
