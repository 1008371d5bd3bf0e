"""CNI FV fixtures: the FV cluster (real etcd, Felix in host namespaces) plus the plugins
installed with `calico cni install`, exactly as an operator installs them."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico import programs
from fv.conftest import Cluster, cluster  # noqa: F401 - re-exported fixture

from .cni_exec import CniRunner

CALICO = str(Path(sys.executable).parent / "calico")


@pytest.fixture(scope="session")
def cni_bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bin_dir = tmp_path_factory.mktemp("cni-bin")
    programs.run([CALICO, "cni", "install", "--bin-dir", str(bin_dir)], check=True)
    return bin_dir


@pytest.fixture(params=["process", "node"])
def cni(
    request: pytest.FixtureRequest,
    cluster: Cluster,  # noqa: F811
    cni_bin_dir: Path,
    tmp_path: Path,
) -> Iterator[CniRunner]:
    """A Felix host `h1` (started and in sync) with an IPv4 and an IPv6 pool, and a runner
    that invokes the plugins inside its namespace. Every test runs twice: with the plugin
    process doing the call ("process") and with `calico cni serve` (what `calico node run`
    runs) listening in the host's namespace, so the plugin hands the call over ("node")."""
    host = cluster.host("h1")
    for name, cidr in (("pool4", "198.19.0.0/24"), ("pool6", "2001:db8:100::/120")):
        cluster.apply({"kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr}})
    host.start()
    host.wait_ready()
    runner = CniRunner(cluster, host, cni_bin_dir, tmp_path / "cni.log")
    if request.param == "process":
        yield runner
        assert "in calico node" not in _text(runner.log_path)
        return
    service_log = tmp_path / "service.log"
    with service_log.open("wb") as out:
        service = programs.start(
            ["nsenter", f"--net=/run/netns/{host.netns}", CALICO, "cni", "serve"], stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        while "CNI service listening" not in _text(service_log):
            assert service.poll() is None and time.monotonic() < deadline, _text(service_log)
            time.sleep(0.05)
        yield runner
    finally:
        service.terminate()
        service.wait(timeout=60)
    # The service took every ADD, DEL and CHECK; what got as far as logging logged its pid.
    assert _text(service_log).count("CNI call from pid") == runner.handed_over
    lines = [line for line in _text(runner.log_path).splitlines() if "calico-cni" in line]
    assert all(f"calico-cni {service.pid} " in line for line in lines), lines[:5]


@pytest.fixture(autouse=True)
def no_service_left() -> Iterator[None]:
    """Whatever started a `calico cni serve` (a fixture, a bench) stopped it by the test's end."""
    yield
    left = _serving_children()
    for pid in left:  # stopped here so one leak does not spread to the next tests
        os.kill(pid, signal.SIGKILL)
    assert not left, f"calico cni serve still running: pids {left}"


def _serving_children() -> list[int]:
    me, found = os.getpid(), []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == me and b"cni\0serve" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except (OSError, IndexError, ValueError):  # exited meanwhile
            continue
    return found


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""
