"""podman (Debian's 4.3, CNI backend) as the runtime: a network of type `calico`, two
containers that ping each other through a host running Felix, and `podman rm -f` releasing it
all through the plugin's DEL."""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico import programs
from fv.conftest import wait_until

from .cni_exec import CniRunner
from .podman import Podman

pytestmark = pytest.mark.fv
NETWORK = "calinet"
CNI_CACHE = Path("/var/lib/cni")


@pytest.fixture
def podman(cni: CniRunner, tmp_path: Path) -> Iterator[Podman]:
    for tool in ("podman", "runc", "nsenter", "/bin/busybox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (scripts/install-deps.sh installs it)")
    cni_cache_existed = CNI_CACHE.exists()
    runtime = Podman(tmp_path / "podman", cni.host.netns, cni.bin_dir)
    conf = cni.conf()
    conf.pop("cniVersion")
    runtime.add_network(
        {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [{**conf, "name": NETWORK}]}
    )
    try:
        yield runtime
    finally:
        runtime.close()
        if not cni_cache_existed:
            _remove_empty_tree(CNI_CACHE)


def _remove_empty_tree(path: Path) -> None:
    """libcni's result cache (podman has no setting for it) is left only if it was there."""
    for sub in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def _pings(podman: Podman, name: str, address: str) -> bool:
    ping = "ping6" if ":" in address else "ping"
    proc = podman.podman("exec", name, ping, "-c1", "-W1", address, check=False)
    return proc.returncode == 0


def test_podman_containers_ping_each_other_and_rm_releases(cni: CniRunner, podman: Podman) -> None:
    ids = {name: podman.run(name, NETWORK, "sleep", "600") for name in ("a", "b")}
    cni.handed_over += len(ids)  # podman ran the plugin: an ADD per container
    weps = {
        name: next(w for w in cni.endpoints() if w.spec.containerID == cid)
        for name, cid in ids.items()
    }
    addresses = {
        name: [n.split("/")[0] for n in w.spec.ipNetworks or []] for name, w in weps.items()
    }
    for name, wep in weps.items():
        assert wep.spec.orchestrator == "cni" and wep.spec.profiles == [NETWORK]
        assert wep.spec.interfaceName == "cali" + ids[name][:11]
        assert wep.spec.interfaceName in cni.host_links()  # in the test host namespace...
        root = programs.run(["ip", "link", "show", wep.spec.interfaceName])
        assert root.returncode != 0  # ...never in the root namespace
        inspect = podman.podman(
            "inspect", name, "--format", "{{.NetworkSettings.Networks." + NETWORK + ".IPAddress}}"
        )
        assert inspect.stdout.strip() == addresses[name][0]

    for src, dst in (("a", "b"), ("b", "a")):
        for address in addresses[dst]:
            wait_until(
                functools.partial(_pings, podman, src, address),
                what=f"{src} pings {dst} at {address}",
            )

    podman.podman("rm", "-f", "-t", "0", "a", "b")
    podman.containers.clear()
    cni.handed_over += len(ids)  # and a DEL per container removed
    assert cni.endpoints() == []
    for name, cid in ids.items():
        assert cni.ipam.ips_by_handle(f"{NETWORK}.{cid}") == []
        assert weps[name].spec.interfaceName not in cni.host_links()
        for address in addresses[name]:
            assert cni.ipam.allocation_of(address) is None
