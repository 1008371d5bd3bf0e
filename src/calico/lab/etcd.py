"""The lab's one etcd, in its own namespace on the fabric.

Hosts reach it over the fabric (`http://<address>:2379`), as real hosts reach etcd over the
network; tools on this machine (the lab itself, calicoctl) reach the same server on a unix
socket in the state dir, which works from any network namespace. With TLS (`etcd: {tls:
true}`) the fabric URL is https and asks for a client certificate; the unix socket stays plain
(etcd serves unix:// without TLS): only who can open the lab's state dir reaches it.
"""

from __future__ import annotations

import time
from pathlib import Path

from calico.datastore.api import DatastoreError
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.lab import procs
from calico.lab.pki import Pki, etcd_tls_args
from calico.lab.procs import Proc

CLIENT_PORT = 2379
PEER_PORT = 2380
_FAST_RAFT = ("--heartbeat-interval", "10", "--election-timeout", "100")  # one member


class EtcdStartError(RuntimeError):
    pass


def endpoints(directory: Path, address: str, tls: bool = False) -> tuple[str, str]:
    """(the fabric endpoint, the unix-socket endpoint)."""
    scheme = "https" if tls else "http"
    return f"{scheme}://{address}:{CLIENT_PORT}", f"unix://{directory}/localhost:{CLIENT_PORT}"


def start_etcd(directory: Path, netns: str, address: str, pki: Pki | None = None) -> Proc:
    """Start etcd in `netns` with its data and socket under `directory` (not yet healthy);
    with `pki`, TLS and client-certificate authentication on the fabric URL."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"localhost:{CLIENT_PORT}").unlink(missing_ok=True)
    fabric, _ = endpoints(directory, address, pki is not None)
    peer = f"http://127.0.0.1:{PEER_PORT}"
    argv = [
        "etcd",
        *("--name", "default", "--data-dir", str(directory / "data")),
        *("--listen-client-urls", f"{fabric},unix://localhost:{CLIENT_PORT}"),
        *("--advertise-client-urls", fabric),
        *("--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer),
        *("--initial-cluster", f"default={peer}"),
        *("--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"),
        *_FAST_RAFT,
        *(etcd_tls_args(pki) if pki is not None else ()),
    ]
    return procs.spawn(argv, directory / "etcd.log", netns=netns, cwd=directory)


def wait_healthy(proc: Proc, unix_endpoint: str, log_file: Path, timeout: float = 20.0) -> None:
    backend = EtcdBackend(EtcdConfig(endpoints=(unix_endpoint,), connect_timeout=0.5))
    deadline = time.monotonic() + timeout
    try:
        while True:
            if not procs.alive(proc):
                raise EtcdStartError(f"etcd exited: {_tail(log_file)}")
            try:
                backend.get("/calico/lab-health-check")
                return
            except DatastoreError as exc:
                if time.monotonic() > deadline:
                    raise EtcdStartError(f"etcd not healthy after {timeout:.0f}s: {exc}") from None
            time.sleep(0.05)
    finally:
        backend.close()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
