"""`calico node run`: calico/node for one host, run inside that host's network namespace.

Start-up as Calico's calico/node: wait for the datastore and initialise it if needed, register
the Node (addresses, AS), create default pools if asked, then run Felix (`calico-felix`, a
child process with the node's environment), the BGP agent (in-process thread that renders
`bird.cfg` and reconfigures BIRD) and BIRD (a child process). CALICO_NETWORKING_BACKEND
`vxlan` runs no BGP agent and no BIRD; `none` also registers no addresses. With bird or
vxlan the node keeps its VXLAN tunnel addresses (`node.tunnels`) and re-checks its addresses
every poll interval. An IPIP pool in the datastore is reported, not served (`node.ipip`).
The node also runs the CNI plugins' calls for plugin processes on this host
(`cni.node_service`), so a container start does not pay for a Python process's imports.
Children that exit are restarted with backoff; SIGTERM/SIGINT stop everything cleanly. Every
file lives in CALICO_RUN_DIR: node.pid, felix.pid, felix.log, bird.cfg, bird.ctl, bird.pid,
bird.log. BIRD starts in graceful restart recovery when a previous BIRD's routes are in the
kernel (`recovery_args`), so a restart keeps the dataplane's routes.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from calico import programs
from calico.backoff import Backoff
from calico.bgp.agent import BGPAgent
from calico.cni.node_service import CniService
from calico.datastore.api import DatastoreError, DatastoreTlsError
from calico.datastore.client import ResourceClient
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.ipam.allocator import IPAMClient
from calico.node.autodetect import host_addresses
from calico.node.config import NodeSettings
from calico.node.ipip import report_ipip_pools
from calico.node.register import (
    NodeStartupError,
    ensure_default_pools,
    merge_cluster_types,
    register_node,
)
from calico.node.supervisor import Child, ChildSpec, Supervisor, restart_backoff
from calico.node.tunnels import TunnelAddresses, TunnelKeeper

log = logging.getLogger("calico.node")


class NodeDaemon:
    def __init__(
        self,
        settings: NodeSettings,
        environ: Mapping[str, str],
        *,
        felix: str | None = None,
        bird: str = "bird",
        birdc: str = "birdc",
    ) -> None:
        self.settings = settings
        self.env = {
            **environ,
            "NODENAME": settings.nodename,
            "CALICO_RUN_DIR": str(settings.run_dir),
        }
        self.stop_event = threading.Event()
        self._felix = felix or _sibling("calico-felix")
        self._bird, self._birdc = bird, birdc
        self.backend = EtcdBackend(EtcdConfig.from_env(self.env).for_host(settings.nodename))
        self.client = ResourceClient(self.backend)

    def run(self) -> int:
        run_dir = self.settings.run_dir
        try:
            if not self._wait_for_datastore():
                return 0
            register_node(self.client, self.settings, host_addresses)
            ensure_default_pools(self.client, self.settings)
            report_ipip_pools(self.client)
            merge_cluster_types(self.client, self.settings.cluster_types)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "node.pid").write_text(f"{os.getpid()}\n")
            self._supervise()
        finally:
            (run_dir / "node.pid").unlink(missing_ok=True)
            self.backend.close()
        return 0

    def _supervise(self) -> None:
        children = [Child(self._felix_spec())]
        keeper = AgentKeeper(self._new_agent) if self.settings.bgp else None
        checks: list[Callable[[], None]] = []
        if keeper is not None:
            children.append(Child(self._bird_spec()))
            checks.append(keeper.check)
        tunnels: TunnelKeeper | None = None
        if self.settings.networking:
            tunnels = TunnelKeeper(
                self.backend, TunnelAddresses(IPAMClient(self.backend), self.settings.nodename)
            )
            tunnels.start()
            tunnels.check()  # before Felix starts, so it finds the tunnel address at once
            checks += [AddressMonitor(self._reregister, self.settings.poll_interval).check,
                       tunnels.check]  # fmt: skip
        supervisor = Supervisor(children)
        cni = CniService()
        cni.start()

        def check() -> None:
            for each in checks:
                each()

        try:
            if keeper is not None:
                keeper.start()
            supervisor.run(self.stop_event, check=check)
        finally:
            log.info("stopping")
            if keeper is not None:
                keeper.stop()
            if tunnels is not None:
                tunnels.stop()
            cni.stop()
            supervisor.stop()

    def _reregister(self) -> None:
        register_node(self.client, self.settings, host_addresses, addresses_only=True)

    def _new_agent(self) -> BGPAgent:
        return BGPAgent(
            self.backend,
            self.settings.nodename,
            self.settings.run_dir,
            bird=self._bird,
            birdc=self._birdc,
            router_id=self.settings.router_id,
            secrets_dir=self.settings.secrets_dir,
        )

    def _felix_spec(self) -> ChildSpec:
        run_dir = self.settings.run_dir
        return ChildSpec(
            "felix", [self._felix], self.env, run_dir / "felix.log", pid_file=run_dir / "felix.pid"
        )

    def _bird_spec(self) -> ChildSpec:
        run_dir = self.settings.run_dir
        cfg, ctl, pid = run_dir / "bird.cfg", run_dir / "bird.ctl", run_dir / "bird.pid"

        def prepare() -> None:  # BIRD starts from a current config (raises if unreachable)
            if not self._new_agent().render_now() and not cfg.exists():
                raise RuntimeError("no BIRD configuration could be rendered yet")

        argv = [self._bird, "-f", "-c", str(cfg), "-s", str(ctl), "-P", str(pid)]
        return ChildSpec(
            "bird",
            argv,
            self.env,
            run_dir / "bird.log",
            prepare=prepare,
            args=recovery_args,
            cleanup=(pid, ctl),
        )

    def _wait_for_datastore(self) -> bool:
        """Initialise the datastore once it answers; False if asked to stop first."""
        warned = False
        while not self.stop_event.is_set():
            try:
                self.client.ensure_initialized()
                return True
            except DatastoreTlsError:
                raise  # a configuration error: waiting does not fix it
            except DatastoreError as exc:
                if not warned:
                    log.warning("waiting for the datastore: %s", exc)
                    warned = True
            self.stop_event.wait(1.0)
        return False


class AddressMonitor:
    """calico/node's monitor-addresses: every `interval` seconds, resolve the node's addresses
    again as at start (re-detecting when IP/IP6 is `autodetect`) and update the Node if they
    changed. A failure is logged and tried again at the next interval."""

    def __init__(self, reregister: Callable[[], None], interval: float) -> None:
        self._reregister = reregister
        self._interval = interval
        self._next = time.monotonic() + interval

    def check(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._interval
        try:
            self._reregister()
        except (NodeStartupError, DatastoreError) as exc:
            log.error("checking the node's addresses failed: %s", exc)


class AgentKeeper:
    """Runs the BGP agent; one that dies is replaced, with backoff."""

    def __init__(self, factory: Callable[[], BGPAgent], backoff: Backoff | None = None) -> None:
        self._factory = factory
        self._backoff = backoff or restart_backoff()
        self.agent: BGPAgent | None = None
        self._started_at = 0.0
        self._restart_at = 0.0

    def start(self) -> None:
        self.agent = self._factory()
        self._started_at = time.monotonic()
        self.agent.start()

    def check(self) -> None:
        now = time.monotonic()
        if self.agent is not None and not self.agent.is_alive():
            log.error("BGP agent died (%s); restarting it", self.agent.failure)
            self.agent.stop(timeout=2.0)
            self.agent = None
            self._restart_at = now + self._backoff.delay(now - self._started_at)
        if self.agent is None and now >= self._restart_at:
            self.start()

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()
            self.agent = None


RTPROT_BIRD = "12"  # the kernel's protocol number for routes BIRD installs


def recovery_args() -> list[str]:
    """`-R` (graceful restart recovery, as calico/node starts BIRD) when a previous BIRD's
    routes are still in the kernel (`persist`): the new BIRD keeps them until its peers have
    sent theirs again, instead of dropping them for the second it takes to relearn them. Not
    on a fresh start: with nothing to keep, recovery would only hold every route back, for a
    peer that is absent until BIRD's `graceful restart wait` (240 s)."""
    for family in ("-4", "-6"):
        argv = ["ip", family, "route", "show", "table", "all", "proto", RTPROT_BIRD]
        if programs.run(argv).stdout.strip():
            return ["-R"]
    return []


def _sibling(name: str) -> str:
    """A console script installed next to this Python (the venv's bin), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def run_node(settings: NodeSettings, environ: Mapping[str, str], **binaries: str) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    daemon = NodeDaemon(settings, environ, **binaries)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.stop_event.set())
    try:
        return daemon.run()
    except DatastoreTlsError as exc:
        log.error("cannot reach the datastore: %s", exc)
        return 1
