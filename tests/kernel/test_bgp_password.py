"""BGP passwords end to end: TCP MD5 between two BIRDs, each driven by its own BGPAgent.

Hosts a and b on one bridge (tests/kernel/bgp_harness.py), each with its own secrets
directory (CALICO_SECRETS_DIR); the agents re-read secret files every 0.2 s, so rewriting a
file is all it takes to change a password.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.lab import frr
from calico.testing.netns import Namespaces

from .bgp_harness import BgpHost, BgpLab, bgp_lab, wait_until

pytestmark = pytest.mark.kernel
RIGHT, WRONG = "right\\pass'word #1", "wrong-password"


@pytest.fixture
def lab(netns: Namespaces, tmp_path: Path) -> Iterator[BgpLab]:
    with bgp_lab(netns, tmp_path, {"a": 1, "b": 2}) as lab:
        yield lab


def _never_established(hosts: tuple[BgpHost, ...], seconds: float) -> None:
    """No session of `hosts` reaches Established within `seconds` (BIRD retries every 5 s
    and a matching password establishes in about 3 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for host in hosts:
            assert not host.established(), f"{host.name}: {host.sessions()}"
        time.sleep(0.2)


def test_mesh_and_peer_passwords_over_tcp_md5(lab: BgpLab) -> None:
    a, b = lab.hosts["a"], lab.hosts["b"]
    for host in (a, b):
        bgp = {"ipv4Address": f"{host.ipv4}/24", "ipv6Address": f"{host.ipv6}/64"}
        lab.apply({"kind": "Node", "metadata": {"name": host.node}, "spec": {"bgp": bgp}})
    mesh_pw = {"secretKeyRef": {"name": "bgp", "key": "mesh"}}
    lab.apply({
        "kind": "BGPConfiguration", "metadata": {"name": "default"},
        "spec": {"nodeMeshPassword": mesh_pw},
    })  # fmt: skip

    # The mesh with the same password on both nodes: IPv4 and IPv6 sessions establish.
    a.secret("mesh", RIGHT)
    b.secret("mesh", RIGHT)
    a.start()
    b.start()
    for host in (a, b):
        assert f'password "{RIGHT}";' in host.config()
        assert (host.run_dir / "bird.cfg").stat().st_mode & 0o777 == 0o600

    def ok() -> bool:
        return a.established() == {b.ipv4, b.ipv6} and b.established() == {a.ipv4, a.ipv6}

    wait_until(ok, 30, "mesh sessions established with the matching password")
    failures = a.md5_failures() + b.md5_failures()

    # B's password changes to a wrong one: B's agent rewrites bird.cfg by itself, BIRD
    # restarts the sessions, and TCP MD5 keeps them from establishing.
    b.secret("mesh", WRONG)
    wait_until(lambda: f'password "{WRONG}";' in b.config(), 10, "B renders the new password")
    wait_until(lambda: not a.established() and not b.established(), 30, "sessions drop")
    _never_established((a, b), 15)
    assert set(a.sessions()) == {b.ipv4, b.ipv6}  # configured, trying, failing
    assert a.md5_failures() + b.md5_failures() > failures  # the kernel dropped them: MD5

    # The right password again: the sessions come back.
    b.secret("mesh", RIGHT)
    wait_until(ok, 30, "mesh re-established")

    # A missing secret: B leaves the mesh sessions out rather than run them without a
    # password, and A (which has its password) cannot establish with B.
    b.secret("mesh", None)
    wait_until(lambda: "protocol bgp Mesh_" not in b.config(), 10, "B withholds the mesh")
    assert "# Mesh_198_18_0_1 not configured: its password secret bgp/mesh" in b.config()
    wait_until(lambda: not b.sessions(), 20, "B has no sessions")
    _never_established((a,), 8)

    # Explicit BGPPeers with their own secret (mesh off): the same rules per peer.
    lab.apply({
        "kind": "BGPConfiguration", "metadata": {"name": "default"},
        "spec": {"nodeToNodeMeshEnabled": False},
    })  # fmt: skip
    peer_pw = {"secretKeyRef": {"name": "bgp", "key": "peer"}}
    for me, other in ((a, b), (b, a)):
        lab.apply({
            "kind": "BGPPeer", "metadata": {"name": f"{me.name}-to-{other.name}"},
            "spec": {"node": me.node, "peerIP": other.ipv4, "asNumber": 64512,
                     "password": peer_pw},
        })  # fmt: skip
    a.secret("peer", RIGHT)
    b.secret("peer", WRONG)
    wait_until(lambda: f'password "{WRONG}";' in b.config(), 10, "B renders its peer password")
    wait_until(lambda: set(a.sessions()) == {b.ipv4}, 20, "A has only the explicit peer")
    _never_established((a, b), 15)
    b.secret("peer", RIGHT)
    wait_until(
        lambda: a.established() == {b.ipv4} and b.established() == {a.ipv4},
        30,
        "explicit peering established",
    )


def test_bird_and_frr_agree_on_the_password(lab: BgpLab) -> None:
    """Another implementation: A's BIRD peers with FRR's bgpd (`neighbor X password Y`) in a
    router namespace on the same bridge; the agent's password must be the one FRR has."""
    if not (frr.FRR_DIR / "bgpd").exists():
        pytest.skip("FRR not found (make test installs frr)")
    a, router_ip, password = lab.hosts["a"], "198.18.0.254", "b\\o'rder-pw"
    router = lab.ns.add("router")
    lab.ns.veth(router, "eth0", lab.fabric, f"{lab.ns.prefix}r")
    lab.ns.exec(lab.fabric, ["ip", "link", "set", f"{lab.ns.prefix}r", "master", "br0"])
    lab.ns.exec(router, ["ip", "addr", "add", f"{router_ip}/24", "dev", "eth0"])
    neighbor = frr.Neighbor(a.ipv4, 64512)
    config = frr.bgpd_config("router", 65000, router_ip, [neighbor], ["198.18.100.0/24"])
    config = config.replace(
        f" neighbor {a.ipv4} timers connect 2\n",
        f" neighbor {a.ipv4} timers connect 2\n neighbor {a.ipv4} password {password}\n",
    )
    frr_dir = Path(tempfile.mkdtemp(prefix="bgppw-frr-"))  # the frr user must reach it
    try:
        frr_dir.chmod(0o755)
        shutil.chown(frr_dir, frr.FRR_USER, frr.FRR_USER)
        (frr_dir / "zebra.conf").write_text("hostname router\n")
        (frr_dir / "bgpd.conf").write_text(config)
        for daemon in ("zebra", "bgpd"):
            lab.ns.popen(router, [
                str(frr.FRR_DIR / daemon), "-f", str(frr_dir / f"{daemon}.conf"),
                "-i", str(frr_dir / f"{daemon}.pid"), "-z", str(frr_dir / "zserv.api"),
                "--vty_socket", str(frr_dir), "-P", "0",
            ], log=str(frr_dir / f"{daemon}.out"))  # fmt: skip
            ready = frr_dir / ("zserv.api" if daemon == "zebra" else "bgpd.vty")
            wait_until(ready.exists, 10, f"{daemon} started")

        bgp = {"ipv4Address": f"{a.ipv4}/24"}
        lab.apply({"kind": "Node", "metadata": {"name": a.node}, "spec": {"bgp": bgp}})
        lab.apply({
            "kind": "BGPPeer", "metadata": {"name": "border"},
            "spec": {"peerIP": router_ip, "asNumber": 65000,
                     "password": {"secretKeyRef": {"name": "bgp", "key": "border"}}},
        })  # fmt: skip
        a.secret("border", password)
        a.start()

        def state() -> str:
            return frr.sessions(frr_dir, router).get(a.ipv4, "")

        wait_until(lambda: state() == "Established", 30, "FRR established with A")
        assert a.established() == {router_ip}

        a.secret("border", "not-" + password)
        wait_until(lambda: state() != "Established", 30, "FRR drops A")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert state() != "Established" and not a.established()
            time.sleep(0.3)

        a.secret("border", password)
        wait_until(lambda: state() == "Established", 30, "FRR re-established with A")
    finally:
        lab.ns.close()  # stop FRR before its directory goes
        shutil.rmtree(frr_dir, ignore_errors=True)
