"""Every executable answers --help and --version (exit 0) and refuses unknown arguments
(exit 2) without side effects: run from the venv's bin with ETCD_ENDPOINTS pointing at a
listening socket that must see no connection, and a run dir and working dir that must stay
empty. The CNI executables are the ones `calico cni install` writes."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from calico import programs, version_line
from calico.cli.main import cli as calico_cli
from calico.ctl.main import cli as ctl_cli

BIN = Path(sys.executable).parent


def _tree(prog: str, command: click.Command, path: list[str]) -> Iterator[list[str]]:
    yield [prog, *path]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _tree(prog, sub, [*path, name])


# Every command and subcommand of the click executables.
CLICK_COMMANDS = [
    *_tree("calicoctl", ctl_cli, []),
    *_tree("calico", calico_cli, []),
    ["calico-felix"],
    ["calico-neutron-resync"],
    ["calico-dhcp-agent"],
]


@pytest.fixture
def etcd_trap() -> Iterator[socket.socket]:
    """A listener where etcd would be: any connection to it is a side effect."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def run(
    argv: list[str], trap: socket.socket, tmp: Path, **extra_env: str
) -> programs.CompletedProcess[str]:
    run_dir = tmp / "run"
    run_dir.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "ETCD_ENDPOINTS": f"http://127.0.0.1:{trap.getsockname()[1]}",
        "CALICO_RUN_DIR": str(run_dir),
        "CALICO_LAB_STATE_DIR": str(run_dir / "lab"),
        "NODENAME": "entry-test",
        **extra_env,
    }
    exe = argv[0] if "/" in argv[0] else str(BIN / argv[0])
    start = time.monotonic()
    proc = programs.run([exe, *argv[1:]], env=env, cwd=run_dir, stdin="", timeout=30)
    assert time.monotonic() - start < 15, f"{argv} took too long"
    with pytest.raises(BlockingIOError):  # nobody connected to "etcd"
        trap.accept()
    assert list(run_dir.iterdir()) == [], f"{argv} wrote {list(run_dir.iterdir())}"
    return proc


@pytest.mark.parametrize("command", CLICK_COMMANDS, ids=" ".join)
def test_help_version_and_unknown_arguments(
    command: list[str], etcd_trap: socket.socket, tmp_path: Path
) -> None:
    helped = run([*command, "--help"], etcd_trap, tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("Usage: "), helped.stdout
    versioned = run([*command, "--version"], etcd_trap, tmp_path)
    assert versioned.returncode == 0, versioned.stderr
    assert versioned.stdout == version_line(command[0]) + "\n"
    refused = run([*command, "--no-such-flag"], etcd_trap, tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.startswith("Usage: ") and "Error: " in refused.stderr


@pytest.mark.parametrize("command", [["calico-felix"], ["calico", "node", "run"]], ids=" ".join)
def test_extra_positional_arguments_are_refused(
    command: list[str], etcd_trap: socket.socket, tmp_path: Path
) -> None:
    refused = run([*command, "extra"], etcd_trap, tmp_path)
    assert refused.returncode == 2
    assert "unexpected extra argument (extra)" in refused.stderr


@pytest.mark.parametrize("plugin", ["calico", "calico-ipam"])
def test_cni_executables(plugin: str, etcd_trap: socket.socket, tmp_path: Path) -> None:
    bin_dir = tmp_path / "cni-bin"
    programs.run([str(BIN / "calico"), "cni", "install", "--bin-dir", str(bin_dir)], check=True)
    exe = str(bin_dir / plugin)
    for flag in ("-v", "--version"):
        proc = run([exe, flag], etcd_trap, tmp_path)
        assert (proc.returncode, proc.stdout) == (0, version_line(plugin) + "\n")
    for flag in ("-h", "--help"):
        proc = run([exe, flag], etcd_trap, tmp_path)
        assert proc.returncode == 0 and proc.stdout.startswith(f"Usage: {plugin} ")
    for bad in (["-t"], ["--bogus"], ["ADD"]):
        proc = run([exe, *bad], etcd_trap, tmp_path)
        assert proc.returncode == 2 and "unexpected argument" in proc.stderr, proc.stderr
    # Without flags: the CNI protocol (here: no CNI_COMMAND is a CNI error, code 4).
    proc = run([exe], etcd_trap, tmp_path)
    assert proc.returncode == 1 and '"code": 4' in proc.stdout


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "IP_AUTODETECTION_METHOD",
            "kubernetes-internal-ip",
            "IP_AUTODETECTION_METHOD: 'kubernetes-internal-ip' is not supported",
        ),
        (
            "CALICO_NETWORKING_BACKEND",
            "gobgp",
            "CALICO_NETWORKING_BACKEND: 'gobgp' is not",
        ),
        ("CALICO_IPV4POOL_IPIP", "Always", "CALICO_IPV4POOL_IPIP: 'Always' is not supported"),
        ("DATASTORE_TYPE", "kubernetes", "DATASTORE_TYPE: 'kubernetes' is not supported"),
    ],
)
def test_calico_node_refuses_unsupported_settings_before_anything_else(
    variable: str, value: str, message: str, etcd_trap: socket.socket, tmp_path: Path
) -> None:
    proc = run(["calico", "node", "run"], etcd_trap, tmp_path, **{variable: value})
    assert proc.returncode == 1
    assert f"Error: {message}" in proc.stderr, proc.stderr
