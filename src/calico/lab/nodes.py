"""Each host's calico/node: `calico node run` inside the host's namespace, configured from its
environment as an operator would (NODENAME, IP/IP6 autodetected from eth0, AS, ETCD_ENDPOINTS
on the fabric, CALICO_RUN_DIR per host, CALICO_SECRETS_DIR in it with the ToR password), plus
readiness and BGP-session checks.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path

from calico.lab import procs
from calico.lab.base import BIN_DIR, LabBase, LabError, tail, wait_for
from calico.lab.bird import BgpSession, bgp_sessions
from calico.lab.resources import tor_secret

FELIX_IN_SYNC = "dataplane in sync with the datastore"
READY_TIMEOUT = 60.0
BGP_TIMEOUT = 60.0
BGP_TIMEOUT_PER_HOST = 8.0
"""Above that, per host of a mesh: a session whose peer did not know it yet is retried after
BIRD's error wait (Calico's `error wait time 5,30`: up to 30 s after repeated resets), and
16 hosts' calico nodes starting at once on a 2-core machine meet it."""


class NodeOps(LabBase):
    def node_env(self, host: str) -> dict[str, str]:
        spec = self.spec.host(host)
        env = {
            "PATH": f"{BIN_DIR}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
            "NODENAME": host,
            "IP": "autodetect",
            "IP6": "autodetect" if spec.ipv6 else "none",
            **self.etcd_env(host),
            "CALICO_RUN_DIR": str(self.run_dir(host)),
            "CALICO_SECRETS_DIR": str(self.secrets_dir(host)),
            "CALICO_NETWORKING_BACKEND": self.spec.networkingBackend,
            "FELIX_MTUFILEPATH": str(self.mtu_file(host)),
        }
        as_number = self.spec.host_as(spec)
        if as_number:
            env["AS"] = str(as_number)
        return env

    def secrets_dir(self, host: str) -> Path:
        return self.run_dir(host) / "secrets"

    def write_secrets(self, host: str) -> None:
        """The host's ToR password as the file its BGPPeer's secretKeyRef names (mode 0600)."""
        spec = self.spec.host(host)
        rack = self.spec.host_rack(spec) if spec.rack else None
        password = rack.tor.password if rack and rack.tor else None
        if rack is None or password is None:
            return
        ref = tor_secret(rack)
        directory = self.secrets_dir(host) / ref["name"]
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(directory / ref["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password)

    def start_node(self, host: str) -> None:
        """Start `calico node run` in the host's namespace (returns at once)."""
        if self.proc_alive(f"node/{host}"):
            raise LabError(host, "start node", "calico node is already running")
        run_dir = self.run_dir(host)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.write_secrets(host)
        felix_log = run_dir / "felix.log"
        self.felix_marks[host] = felix_log.stat().st_size if felix_log.exists() else 0
        argv = [str(BIN_DIR / "calico"), "node", "run"]
        proc = procs.spawn(
            argv, run_dir / "node.log", netns=self.netns(host), env=self.node_env(host)
        )
        self.record_proc(f"node/{host}", proc)

    def stop_node(self, host: str) -> None:
        """SIGTERM: the node stops BIRD and Felix and exits."""
        proc = self.state.proc(f"node/{host}")
        if proc is not None:
            procs.stop([proc], timeout=15.0)
        self._stop_leftovers(host)
        self.record_proc(f"node/{host}", None)

    def kill_node(self, host: str) -> None:
        """SIGKILL the node and its children: the crash case (nothing is cleaned up)."""
        proc = self.state.proc(f"node/{host}")
        if proc is not None:
            procs.kill([proc])
        self._stop_leftovers(host, kill=True)
        self.record_proc(f"node/{host}", None)

    def kill_bird(self, host: str) -> int:
        """SIGKILL the host's BIRD (the node restarts it); returns the PID killed."""
        proc = procs.from_pid_file(self.run_dir(host) / "bird.pid")
        if proc is None or not procs.signal_proc(proc, signal.SIGKILL):
            raise LabError(host, "kill BIRD", "BIRD is not running")
        procs.wait_gone([proc], 5.0)
        return proc.pid

    def _stop_leftovers(self, host: str, kill: bool = False) -> None:
        """Felix or BIRD left running (their node was killed): stop them by their pid files."""
        for name in ("felix.pid", "bird.pid"):
            proc = procs.from_pid_file(self.run_dir(host) / name)
            if proc is not None and kill:
                procs.kill([proc])
            elif proc is not None:
                procs.stop([proc])

    def node_problem(self, host: str) -> str | None:
        """Why the node is not ready yet (None when it is); LabError if it died."""
        run_dir = self.run_dir(host)
        if not self.proc_alive(f"node/{host}"):
            raise LabError(host, "calico node", f"exited\n    {tail(run_dir / 'node.log')}")
        try:
            with (run_dir / "felix.log").open("rb") as f:
                f.seek(self.felix_marks.get(host, 0))
                synced = FELIX_IN_SYNC.encode() in f.read()
        except OSError:
            synced = False
        if not synced:
            return "Felix has not programmed the dataplane yet"
        if self.spec.bgp and bgp_sessions(run_dir / "bird.ctl") is None:
            return "BIRD is not answering on bird.ctl"
        return None

    def wait_nodes_ready(self, hosts: Sequence[str], timeout: float = READY_TIMEOUT) -> None:
        pending = list(hosts)

        def check() -> bool | None:
            pending[:] = [h for h in pending if self.node_problem(h) is not None]
            return True if not pending else None

        if wait_for(check, timeout, 0.1) is None:
            host = pending[0]
            log = tail(self.run_dir(host) / "felix.log", 8)
            raise LabError(host, "wait for calico node", f"{self.node_problem(host)}\n    {log}")

    def sessions(self, host: str) -> list[BgpSession]:
        return bgp_sessions(self.run_dir(host) / "bird.ctl") or []

    def wait_bgp(self, hosts: Sequence[str], timeout: float | None = None) -> None:
        """Until every BGP session of these hosts is Established."""
        spec = self.spec
        if timeout is None:
            timeout = max(BGP_TIMEOUT, BGP_TIMEOUT_PER_HOST * len(spec.hosts))
        want_peers = len(spec.hosts) > 1 or spec.border is not None or bool(spec.racks)

        def down(host: str) -> list[str]:
            sessions = self.sessions(host)
            if want_peers and not sessions:
                return ["(no BGP sessions configured yet)"]
            return [f"{s.name} ({s.state} {s.info})" for s in sessions if not s.established]

        def check() -> bool | None:
            return True if not any(down(h) for h in hosts) else None

        if wait_for(check, timeout, 0.2) is None:
            host = next(h for h in hosts if down(h))
            raise LabError(host, "BGP sessions", "not established: " + ", ".join(down(host)))
