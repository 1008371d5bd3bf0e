"""What every part of a lab shares: its spec, its recorded state, its paths and datastore."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from calico.datastore.client import ResourceClient
from calico.datastore.config import EtcdConfig, parse_endpoints
from calico.datastore.etcd import EtcdBackend
from calico.lab import netns, procs
from calico.lab.pki import Pki, client_env, host_client
from calico.lab.procs import Proc
from calico.lab.spec import LabSpec
from calico.lab.state import LabState, StateStore

T = TypeVar("T")
Progress = Callable[[str], None]
BIN_DIR = Path(sys.executable).parent


class LabError(RuntimeError):
    """A lab operation failed: `where` (a host, workload...) and `step` say what failed."""

    def __init__(self, where: str, step: str, detail: str) -> None:
        super().__init__(f"{where}: {step}: {detail}")
        self.where, self.step, self.detail = where, step, detail


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").rstrip().splitlines()[-lines:]
    except OSError:
        return f"(no {path.name})"
    return "\n    ".join([f"last lines of {path}:", *text])


def wait_for(check: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T | None:
    """Poll `check` until it returns something other than None, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None or time.monotonic() > deadline:
            return result
        time.sleep(interval)


class LabBase:
    def __init__(self, store: StateStore, state: LabState, spec: LabSpec) -> None:
        self.store = store
        self.state = state
        self.spec = spec
        self.progress: Progress = lambda _msg: None
        self.felix_marks: dict[str, int] = {}  # felix.log size when each node was started
        self._backend: EtcdBackend | None = None

    # -- paths ------------------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        return self.store.dir

    @property
    def pki(self) -> Pki | None:
        """The lab's CA and certificates when its etcd has TLS (made by build_etcd)."""
        return Pki(self.dir / "etcd" / "pki") if self.spec.etcd.tls else None

    def etcd_env(self, host: str) -> dict[str, str]:
        """How a host's components reach etcd: the fabric URL and, with TLS, the host's files."""
        env = {"ETCD_ENDPOINTS": self.state.etcd_endpoint}
        if self.pki is not None:
            env |= client_env(self.pki, host_client(host))
        return env

    def run_dir(self, host: str) -> Path:
        """The host's CALICO_RUN_DIR: node, Felix and BIRD files."""
        return self.dir / "hosts" / host

    def mtu_file(self, host: str) -> Path:
        """Where the host's Felix writes the workload MTU and its CNI calls read it (not the
        machine's /var/lib/calico/mtu: the lab's hosts share one machine)."""
        return self.run_dir(host) / "mtu"

    @property
    def cni_bin(self) -> Path:
        return self.dir / "cni" / "bin"

    def netns(self, entity: str) -> str:
        return self.state.netns(entity)

    # -- recording --------------------------------------------------------------------------

    def save(self) -> None:
        self.store.save(self.state)

    def add_netns(self, entity: str) -> str:
        """Create the entity's namespace, recording it first so `down` always finds it."""
        name = self.netns(entity)
        with self.store.lock:
            if name not in self.state.namespaces:
                self.state.namespaces.append(name)
                self.save()
        netns.add(name)
        return name

    def record_proc(self, key: str, proc: Proc | None) -> None:
        with self.store.lock:
            if proc is None:
                self.state.procs.pop(key, None)
            else:
                self.state.procs[key] = proc.to_json()
            self.save()

    def proc_alive(self, key: str) -> bool:
        return procs.alive(self.state.proc(key))

    def step(self, where: str, step: str, action: Callable[[], T]) -> T:
        """Run one step of an operation; any failure becomes a LabError naming it."""
        self.progress(f"[{where}] {step}")
        try:
            return action()
        except LabError:
            raise
        except Exception as exc:
            raise LabError(where, step, str(exc) or type(exc).__name__) from exc

    # -- datastore --------------------------------------------------------------------------

    @property
    def backend(self) -> EtcdBackend:
        """The lab's etcd, through its members' unix sockets (reachable from this namespace)."""
        if self._backend is None:
            endpoints = parse_endpoints(self.state.etcd_unix)
            self._backend = EtcdBackend(EtcdConfig(endpoints=endpoints))
        return self._backend

    @property
    def client(self) -> ResourceClient:
        return ResourceClient(self.backend)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
