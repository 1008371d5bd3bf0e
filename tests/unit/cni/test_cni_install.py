"""`calico cni install` and the `calico` command group."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from click.testing import CliRunner

from calico import programs
from calico.cli.main import cli
from calico.cni.install import install_conflist, sample_conflist


def test_install_writes_executable_plugins_and_a_conflist(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["cni", "install", "--bin-dir", str(tmp_path / "bin"), "--conf-dir", str(tmp_path / "net.d"),
         "--etcd-endpoints", "http://10.0.0.1:2379", "--nodename", "n1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name, module in (
        ("calico", "calico.cni.plugin"),
        ("calico-ipam", "calico.cni.ipam_plugin"),
    ):
        path = tmp_path / "bin" / name
        assert os.access(path, os.X_OK)
        text = path.read_text()
        assert text.startswith(f"#!{sys.executable} -I\n") and f"main({module!r})" in text
    conflist = json.loads((tmp_path / "net.d" / "10-calico.conflist").read_text())
    assert conflist == {
        "name": "k8s-pod-network",
        "cniVersion": "1.0.0",
        "plugins": [
            {"type": "calico", "log_level": "info", "etcd_endpoints": "http://10.0.0.1:2379",
             "nodename": "n1", "ipam": {"type": "calico-ipam"}},
        ],
    }  # fmt: skip
    version = programs.run(
        [str(tmp_path / "bin" / "calico")],
        env={"CNI_COMMAND": "VERSION"},
        stdin='{"cniVersion": "0.4.0"}',
    )
    assert version.returncode == 0, version.stderr
    assert json.loads(version.stdout)["cniVersion"] == "1.0.0"


def test_existing_conflist_is_kept_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "10-calico.conflist").write_text("{}")
    kept = install_conflist(tmp_path, sample_conflist())
    assert not kept.written and kept.path.read_text() == "{}"
    forced = install_conflist(tmp_path, sample_conflist(mtu=1400), force=True)
    assert forced.written and json.loads(forced.path.read_text())["plugins"][0]["mtu"] == 1400
