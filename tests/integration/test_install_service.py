"""`calico node install-service`: systemd units that systemd itself accepts, an environment
file written once, and bad input refused with nothing written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from calico import programs
from calico.cli.main import cli
from calico.node.service import ENV_FILE, UNIT_DIR

BIN = Path(sys.executable).parent


def install(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["node", "install-service", "--root", str(root), *args])
    return result.exit_code, result.output


def verify(unit: Path) -> programs.CompletedProcess[str]:
    return programs.run(["systemd-analyze", "verify", str(unit)], check=False)


def test_units_pass_systemd_verification_and_a_broken_one_does_not(tmp_path: Path) -> None:
    code, out = install(
        tmp_path, "--etcd-endpoints", "http://198.18.0.10:2379", "--nodename", "host-1",
        "--dhcp-agent", "--bin-dir", str(BIN),
    )  # fmt: skip
    assert code == 0, out
    units = sorted((tmp_path / UNIT_DIR).iterdir())
    assert [u.name for u in units] == ["calico-dhcp-agent.service", "calico-node.service"]
    for unit in units:
        checked = verify(unit)
        assert (checked.returncode, checked.stderr) == (0, ""), checked.stderr
    node = (tmp_path / UNIT_DIR / "calico-node.service").read_text()
    assert f"ExecStart={BIN}/calico node run" in node
    assert "EnvironmentFile=/etc/calico/calico.env" in node
    assert "After=network-online.target" in node and "Restart=always" in node
    assert "next: systemctl daemon-reload && systemctl enable --now calico-node" in out
    broken = tmp_path / "broken.service"
    broken.write_text(node.replace(str(BIN), "/nonexistent"))
    assert verify(broken).returncode != 0  # the check can fail


def test_environment_file_is_written_once_and_private(tmp_path: Path) -> None:
    args = ("--etcd-endpoints", "https://198.18.0.10:2379,https://198.18.0.11:2379/")
    assert install(tmp_path, *args)[0] == 0
    env = tmp_path / ENV_FILE
    assert "ETCD_ENDPOINTS=https://198.18.0.10:2379,https://198.18.0.11:2379\n" in env.read_text()
    assert env.stat().st_mode & 0o777 == 0o600
    env.write_text("ETCD_ENDPOINTS=http://198.18.0.99:2379\n")  # the operator's edit
    code, out = install(tmp_path, *args)
    assert (code, "nothing to do" in out) == (0, True)
    assert env.read_text() == "ETCD_ENDPOINTS=http://198.18.0.99:2379\n"


def test_a_changed_unit_is_replaced_only_with_force(tmp_path: Path) -> None:
    args = ("--etcd-endpoints", "http://198.18.0.10:2379")
    assert install(tmp_path, *args)[0] == 0
    unit = tmp_path / UNIT_DIR / "calico-node.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    code, out = install(tmp_path, *args, "--dhcp-agent")
    assert code == 1 and "exists with other content (--force replaces it)" in out
    assert unit.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert not (tmp_path / UNIT_DIR / "calico-dhcp-agent.service").exists()  # nothing half-done
    assert install(tmp_path, *args, "--force")[0] == 0
    assert "calico node run" in unit.read_text()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), "--etcd-endpoints: required"),
        (("--etcd-endpoints", "198.18.0.10:2379"), "--etcd-endpoints:"),
        (("--etcd-endpoints", "http://198.18.0.10:2379", "--nodename", "Bad_Name"), "--nodename:"),
        (
            (
                "--etcd-endpoints",
                "https://198.18.0.10:2379",
                "--etcd-ca-cert-file",
                "/nonexistent/ca.pem",
            ),
            "--etcd-ca-cert-file: '/nonexistent/ca.pem' is not an existing file",
        ),
        (
            ("--etcd-endpoints", "http://198.18.0.10:2379", "--bin-dir", "/nonexistent"),
            "--bin-dir:",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_flag_and_nothing_is_written(
    tmp_path: Path, args: tuple[str, ...], error: str
) -> None:
    code, out = install(tmp_path, *args)
    assert code == 1 and error in out, out
    assert list(tmp_path.iterdir()) == []


def test_install_doc_names_the_packages_of_every_program_a_host_runs() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "install.md").read_text()
    (line,) = [ln for ln in doc.splitlines() if ln.startswith("apt-get install")]
    named = set(line.split()[4:])
    runtime = {"Felix", "calico node", "BGP agent", "calico-dhcp-agent"}
    needed = {
        p.package
        for p in programs.entries()
        if p.package != programs.OWN_PACKAGE and any(user in p.users for user in runtime)
    }
    assert needed <= named, f"docs/install.md misses {sorted(needed - named)}"
    listed = {p.package for p in programs.entries()} | {"python3-venv"}
    assert named <= listed, f"not in programs.txt: {sorted(named - listed)}"
