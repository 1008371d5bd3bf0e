"""The lab's etcd: one member or a cluster, each member in its own namespace on the fabric.

Hosts reach the members over the fabric (`http://<address>:2379`, all of them in
ETCD_ENDPOINTS), as real hosts reach etcd over the network; tools on this machine (the lab
itself, calicoctl) reach the same members on unix sockets in their state dirs, which work from
any network namespace. Members talk raft over the fabric (port 2380). With TLS (`etcd: {tls:
true}`) the fabric URLs are https and ask for a client certificate; the unix sockets stay plain
(etcd serves unix:// without TLS): only who can open the lab's state dir reaches them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from calico.datastore.api import DatastoreError
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.lab import procs
from calico.lab.pki import Pki, etcd_tls_args
from calico.lab.procs import Proc

CLIENT_PORT = 2379
PEER_PORT = 2380
# Fast elections keep a lab's leader failover short; a cluster's members share one busy
# machine, so their heartbeats get more slack than a lone member (which never elects again).
_RAFT_ONE = ("--heartbeat-interval", "10", "--election-timeout", "100")
_RAFT_CLUSTER = ("--heartbeat-interval", "50", "--election-timeout", "500")


class EtcdStartError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Member:
    """One etcd member: its name (also its lab entity), fabric address and state directory."""

    name: str
    address: str
    directory: Path
    tls: bool = False  # the fabric URL is https and asks for a client certificate

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}:{CLIENT_PORT}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.address}:{PEER_PORT}"

    @property
    def unix_endpoint(self) -> str:
        return f"unix://{self.directory}/localhost:{CLIENT_PORT}"

    @property
    def log_file(self) -> Path:
        return self.directory / "etcd.log"


def member_argv(member: Member, cluster: Sequence[Member], pki: Pki | None = None) -> list[str]:
    """etcd's command line for `member` of `cluster` (the one place its flags are chosen);
    with `pki`, TLS and client-certificate authentication on the fabric URL."""
    initial = ",".join(f"{m.name}={m.peer_url}" for m in cluster)
    return [
        "etcd",
        *("--name", member.name, "--data-dir", str(member.directory / "data")),
        *("--listen-client-urls", f"{member.client_url},unix://localhost:{CLIENT_PORT}"),
        *("--advertise-client-urls", member.client_url),
        *("--listen-peer-urls", member.peer_url),
        *("--initial-advertise-peer-urls", member.peer_url),
        *("--initial-cluster", initial, "--initial-cluster-state", "new"),
        *("--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"),
        *(_RAFT_ONE if len(cluster) == 1 else _RAFT_CLUSTER),
        *(etcd_tls_args(pki) if pki is not None else ()),
    ]


def start_member(
    member: Member, cluster: Sequence[Member], netns: str, pki: Pki | None = None
) -> Proc:
    """Start `member` in `netns` with its data and socket in its directory (not yet healthy)."""
    member.directory.mkdir(parents=True, exist_ok=True)
    (member.directory / f"localhost:{CLIENT_PORT}").unlink(missing_ok=True)
    argv = member_argv(member, cluster, pki)
    return procs.spawn(argv, member.log_file, netns=netns, cwd=member.directory)


def wait_healthy(proc: Proc, member: Member, timeout: float = 30.0) -> None:
    """Until the member answers a read (which needs a quorum: start every member first)."""
    backend = EtcdBackend(EtcdConfig(endpoints=(member.unix_endpoint,), connect_timeout=0.5))
    deadline = time.monotonic() + timeout
    try:
        while True:
            if not procs.alive(proc):
                raise EtcdStartError(f"etcd {member.name} exited: {_tail(member.log_file)}")
            try:
                backend.get("/calico/lab-health-check")
                return
            except DatastoreError as exc:
                if time.monotonic() > deadline:
                    raise EtcdStartError(
                        f"etcd {member.name} not healthy after {timeout:.0f}s: {exc}"
                    ) from None
            time.sleep(0.05)
    finally:
        backend.close()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def leader(cluster: Sequence[Member]) -> Member | None:
    """The member the others follow, asked of each live member (None while electing)."""
    for member in cluster:
        backend = EtcdBackend(EtcdConfig(endpoints=(member.unix_endpoint,), connect_timeout=0.5))
        try:
            own, leader_id = backend.member_status()
        except DatastoreError:
            continue
        finally:
            backend.close()
        if own == leader_id:
            return member
    return None
