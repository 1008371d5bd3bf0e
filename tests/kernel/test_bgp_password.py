"""BGP passwords end to end: TCP MD5 between two BIRDs, each driven by its own BGPAgent.

Topology (all namespaces created here):
  fabric: br0 --veth-- host-a:eth0 198.18.0.1/24 2001:db8::1/64
              --veth-- host-b:eth0 198.18.0.2/24 2001:db8::2/64
Each host has its own secrets directory (CALICO_SECRETS_DIR), BIRD run by the test in the
host namespace (killed by PID), and a BGPAgent thread. The agents re-read secret files every
0.2 s, so rewriting a file is all it takes to change a password.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from calico.bgp.agent import BGPAgent
from calico.bgp.birdctl import bgp_peers
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.lab import frr
from calico.model import parse_resource
from calico.testing import waiting
from calico.testing.etcd_server import EtcdServer
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel
RIGHT, WRONG = "right\\pass'word #1", "wrong-password"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    waiting.wait_until(predicate, timeout, what, interval=0.2)


class Host:
    def __init__(self, lab: Lab, name: str, index: int) -> None:
        self.lab, self.name = lab, name
        self.node = f"node-{name}"
        self.ipv4, self.ipv6 = f"198.18.0.{index}", f"2001:db8::{index}"
        self.netns = lab.ns.add(f"host-{name}")
        self.run_dir = lab.tmp / name / "run"
        self.secrets = lab.tmp / name / "secrets"
        self.run_dir.mkdir(parents=True)
        lab.ns.veth(self.netns, "eth0", lab.fabric, f"{lab.ns.prefix}{name}")
        lab.ns.exec(lab.fabric, ["ip", "link", "set", f"{lab.ns.prefix}{name}", "master", "br0"])
        lab.ns.exec(self.netns, ["ip", "addr", "add", f"{self.ipv4}/24", "dev", "eth0"])
        v6 = ["ip", "-6", "addr", "add", f"{self.ipv6}/64", "dev", "eth0", "nodad"]
        lab.ns.exec(self.netns, v6)
        self.agent = BGPAgent(
            EtcdBackend.from_env({"ETCD_ENDPOINTS": lab.etcd.endpoint}),
            self.node,
            self.run_dir,
            debounce=0.05,
            retry_interval=0.5,
            secrets_dir=self.secrets,
            secret_interval=0.2,
        )

    def secret(self, key: str, value: str | None) -> None:
        """Write (mode 0600) or remove the file of secret bgp/<key>."""
        path = self.secrets / "bgp" / key
        if value is None:
            path.unlink()
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{key}")
        tmp.write_text(value + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)

    def start(self) -> None:
        assert self.agent.render_now()
        run = self.run_dir
        args = ["bird", "-f", "-c", f"{run}/bird.cfg", "-s", f"{run}/bird.ctl"]
        self.lab.ns.popen(self.netns, [*args, "-P", f"{run}/bird.pid"], log=f"{run}/bird.log")
        self.agent.start()

    def config(self) -> str:
        return (self.run_dir / "bird.cfg").read_text()

    def sessions(self) -> dict[str, str]:
        """Peer address -> BIRD's state text, for the sessions BIRD has."""
        try:
            return {p.address: p.info for p in bgp_peers(self.run_dir / "bird.ctl")}
        except Exception:
            return {}

    def md5_failures(self) -> int:
        """The namespace's TcpExt TCPMD5Failure: segments dropped for a wrong MD5 digest."""
        out = self.lab.ns.exec(self.netns, ["cat", "/proc/net/netstat"]).stdout
        names, values = (line.split() for line in out.splitlines() if line.startswith("TcpExt:"))
        return int(dict(zip(names, values, strict=True))["TCPMD5Failure"])

    def established(self) -> set[str]:
        return {a for a, info in self.sessions().items() if info.startswith("Established")}


class Lab:
    def __init__(self, ns: Namespaces, etcd: EtcdServer, tmp: Path) -> None:
        self.ns, self.etcd, self.tmp = ns, etcd, tmp
        self.backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd.endpoint})
        self.client = ResourceClient(self.backend)
        self.fabric = ns.add("fabric")
        ns.exec(self.fabric, ["ip", "link", "add", "br0", "type", "bridge"])
        ns.exec(self.fabric, ["ip", "link", "set", "br0", "up"])
        self.a, self.b = Host(self, "a", 1), Host(self, "b", 2)

    def apply(self, doc: dict[str, Any]) -> None:
        self.client.apply(parse_resource({"apiVersion": "projectcalico.org/v3", **doc}))

    def close(self) -> None:
        for host in (self.a, self.b):
            host.agent.stop()
        self.backend.close()


@pytest.fixture
def lab(netns: Namespaces, tmp_path: Path) -> Iterator[Lab]:
    for tool in ("bird", "birdc", "etcd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (make test installs bird2 and etcd)")
    with EtcdServer() as etcd:
        lab = Lab(netns, etcd, tmp_path)
        try:
            yield lab
        finally:
            lab.close()
            for host in (lab.a, lab.b):
                log = host.run_dir / "bird.log"
                if log.exists():
                    print(f"--- bird log {host.name} ---\n{log.read_text()[-3000:]}")


def _never_established(hosts: tuple[Host, ...], seconds: float) -> None:
    """No session of `hosts` reaches Established within `seconds` (BIRD retries every 5 s
    and a matching password establishes in about 3 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for host in hosts:
            assert not host.established(), f"{host.name}: {host.sessions()}"
        time.sleep(0.2)


def test_mesh_and_peer_passwords_over_tcp_md5(lab: Lab) -> None:
    a, b = lab.a, lab.b
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


def test_bird_and_frr_agree_on_the_password(lab: Lab) -> None:
    """Another implementation: A's BIRD peers with FRR's bgpd (`neighbor X password Y`) in a
    router namespace on the same bridge; the agent's password must be the one FRR has."""
    if not (frr.FRR_DIR / "bgpd").exists():
        pytest.skip("FRR not found (make test installs frr)")
    a, router_ip, password = lab.a, "198.18.0.254", "b\\o'rder-pw"
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
