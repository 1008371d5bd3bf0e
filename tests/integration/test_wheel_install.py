"""What an operator installs on a server: a wheel built from this repo, in a fresh virtual
environment, with every command working and its units accepted by systemd."""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

from calico import programs

REPO = Path(__file__).parents[2]


def run(*args: str | Path) -> programs.CompletedProcess[str]:
    done = programs.run([str(a) for a in args], check=False)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done


def test_wheel_in_a_clean_venv_runs_every_command(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building must leave nothing in the checkout
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", source, "-w", tmp_path / "dist")
    (wheel,) = (tmp_path / "dist").glob("calico_py-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel)

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert len(scripts) >= 5
    for script in scripts:
        assert "Usage:" in run(venv / "bin" / script, "--help").stdout, script
    # Package data and the Neutron entry point come with the wheel.
    check = (
        "from importlib.metadata import entry_points; from calico import programs; "
        "assert programs.listed()['calico-felix']; "
        "assert [e.name for e in entry_points(group='neutron.ml2.mechanism_drivers')] == ['calico']"
    )
    run(venv / "bin" / "python", "-c", check)

    root = tmp_path / "root"
    run(venv / "bin" / "calico", "node", "install-service", "--root", root,
        "--etcd-endpoints", "http://198.18.0.10:2379", "--dhcp-agent")  # fmt: skip
    unit = root / "etc/systemd/system/calico-node.service"
    assert f"ExecStart={venv}/bin/calico node run" in unit.read_text()
    for name in ("calico-node.service", "calico-dhcp-agent.service"):
        verified = run("systemd-analyze", "verify", root / "etc/systemd/system" / name)
        assert verified.stderr == ""
