"""CNI FV fixtures: the FV cluster (real etcd, Felix in host namespaces) plus the plugins
installed with `calico cni install`, exactly as an operator installs them."""

from __future__ import annotations

import sys
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


@pytest.fixture
def cni(cluster: Cluster, cni_bin_dir: Path, tmp_path: Path) -> CniRunner:  # noqa: F811
    """A Felix host `h1` (started and in sync) with an IPv4 and an IPv6 pool, and a runner
    that invokes the plugins inside its namespace."""
    host = cluster.host("h1")
    for name, cidr in (("pool4", "198.19.0.0/24"), ("pool6", "2001:db8:100::/120")):
        cluster.apply({"kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr}})
    host.start()
    host.wait_ready()
    return CniRunner(cluster, host, cni_bin_dir, tmp_path / "cni.log")
