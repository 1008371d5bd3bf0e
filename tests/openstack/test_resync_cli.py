"""calico-neutron-resync's failure paths (its success path: test_neutron_resync_feedback)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from calico.openstack import resync_cli
from calico.testing.etcd_server import EtcdServer

pytestmark = pytest.mark.openstack


@pytest.fixture(autouse=True)
def _no_etcd_endpoints_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETCD_ENDPOINTS", raising=False)


def _config(tmp_path: Path, body: str) -> str:
    path = tmp_path / "neutron.conf"
    path.write_text(f"[DEFAULT]\ndebug = true\n[calico]\n{body}")
    return str(path)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_times_out_when_no_neutron_server_answers(
    calico_etcd: EtcdServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, f"etcd_port = {calico_etcd.client_port}\n")
    assert resync_cli.main(["--config-file", config, "--timeout", "1"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("calico-neutron-resync: no neutron-server running the calico driver")
    assert err.count("\n") == 1


def test_unreachable_etcd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, f"etcd_host = 127.0.0.1\netcd_port = {_closed_port()}\n")
    assert resync_cli.main(["--config-file", config, "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("calico-neutron-resync: cannot reach etcd at http://127.0.0.1:")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("etcd_port = twenty\n", "[calico] etcd_port 'twenty': not an integer"),
        ("openstack_region = Not_A_Label\n", "[calico] openstack_region 'Not_A_Label'"),
        ("etcd_key_file = /k.pem\n", "[calico] etcd options: "),
    ],
)
def test_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    assert resync_cli.main(["--config-file", _config(tmp_path, body)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"calico-neutron-resync: {message}"), err
    assert err.count("\n") == 1


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert resync_cli.main(["--config-file", str(tmp_path / "nope.conf")]) == 1
    assert "cannot read config file" in capsys.readouterr().err


def test_default_config_files_are_read_when_present(
    calico_etcd: EtcdServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    present = _config(tmp_path, f"etcd_port = {calico_etcd.client_port}\n")
    monkeypatch.setattr(resync_cli, "DEFAULT_CONFIG_FILES", (present, str(tmp_path / "absent.ini")))
    # It reached the test's etcd (so it read the file) and found no leader there.
    assert resync_cli.main(["--timeout", "1"]) == 1
    assert "no neutron-server running the calico driver" in capsys.readouterr().err
