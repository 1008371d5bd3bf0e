"""`Lab`: a multi-host Calico deployment on one machine, shared by `calico lab` and the tests.

    lab = Lab.create(read_lab(path))     # or Lab.open(state_dir) from another invocation
    lab.up(progress=print)               # LabError says which machine and step failed
    lab.probe("web-1", "db-1", "tcp")    # real packets, from inside the source namespace
    lab.down()                           # every process and namespace, also after a failed up

`up` builds the fabric (a bridge, or racks behind ToRs and spines or one plain router), starts
etcd, applies the
lab's resources, builds the border router, external machines and hosts, starts `calico node
run` on every host, waits for Felix and the BGP sessions (with networking backend bird), attaches
the workloads through the CNI plugin and waits until every host routes to every workload.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import TracebackType

from calico.lab import cni, netns, procs
from calico.lab.access import AccessOps
from calico.lab.base import LabError, Progress
from calico.lab.fabric import FRR_RUN_ROOT
from calico.lab.resources import lab_resources
from calico.lab.spec import LabSpec
from calico.lab.state import DEFAULT_STATE_ROOT, LabState, StateStore, state_dir_for

PARALLEL = 4


class Lab(AccessOps):
    @classmethod
    def create(cls, spec: LabSpec, state_dir: Path | None = None) -> Lab:
        """A new lab (nothing built yet); refuses a state dir that holds a lab."""
        store = StateStore(state_dir or state_dir_for(spec.name))
        if store.exists():
            raise LabError(
                spec.name,
                "create",
                f"a lab is already recorded in {store.dir}; run `calico lab down` first",
            )
        prefix = f"{spec.name}-{secrets.token_hex(2)}"
        state = LabState(spec.name, prefix, spec.model_dump(mode="json"))
        store.save(state)
        return cls(store, state, spec)

    @classmethod
    def open(cls, state_dir: Path) -> Lab:
        store = StateStore(state_dir)
        if not store.exists():
            raise LabError(str(state_dir), "open", "no lab is recorded there")
        state = store.load()
        return cls(store, state, LabSpec.model_validate(state.spec))

    # -- up ---------------------------------------------------------------------------------

    def up(self, progress: Progress | None = None) -> None:
        if progress is not None:
            self.progress = progress
        spec = self.spec
        self.step("lab", "install the CNI plugins", lambda: cni.install(self.cni_bin))
        self.build_network()
        members = f"{spec.etcd.members} etcd members" if spec.etcd.members > 1 else "etcd"
        self.step("etcd", f"start {members} on {spec.etcd.ipv4 or 'the fabric'}", self.build_etcd)
        self.step("datastore", "initialise and apply the lab's resources", self._apply_resources)
        if spec.border is not None and self.fabric_border() is None:  # else one of the routers
            self.step(spec.border.name, "border router (FRR)", self.build_border)
        for ext in spec.externals:
            self.step(ext.name, "external machine", partial(self.build_external, ext))
        for host in spec.hosts:
            self.step(host.name, "namespace and eth0", partial(self.build_host, host))
        for host in spec.hosts:
            self.step(host.name, "start calico node", partial(self.start_node, host.name))
        names = [h.name for h in spec.hosts]
        self.step("hosts", "wait for Felix and BIRD", lambda: self.wait_nodes_ready(names))
        if spec.bgp:
            self.step("hosts", "wait for BGP sessions", lambda: self.wait_bgp(names))
        self._add_workloads()
        self.step("workloads", "wait for routes on every host", self.wait_routes)
        self.state.up = True
        self.save()

    def build_network(self) -> None:
        """What the machines plug into: the racks with their ToRs and spines (up and routing
        between the racks) or their router, else the fabric bridge. Also the start of a
        benchmark's floor: the same network with plain BGP speakers as hosts."""
        spec = self.spec
        if spec.racks:
            what = "racks, ToRs and spines" if spec.router is None else "racks and the router"
            self.step("fabric", what, self.build_racks)
            for name in self.routers():
                self.step(name, "router (FRR)", partial(self.start_router, name))
            if self.routers():
                self.step("fabric", "wait for routes between the racks", self.wait_fabric)
        else:
            self.step("fabric", "bridge", self.build_fabric)

    def _apply_resources(self) -> None:
        client = self.client
        client.ensure_initialized()
        for resource in lab_resources(self.spec):
            client.apply(resource)

    def _add_workloads(self) -> None:
        with ThreadPoolExecutor(PARALLEL) as pool:
            futures = [pool.submit(self.add_workload, wl) for wl in self.spec.workloads]
            for future in futures:
                future.result()

    # -- down -------------------------------------------------------------------------------

    def down(self, progress: Progress | None = None) -> None:
        """Stop every process and remove every namespace and file of the lab."""
        say = progress or (lambda _msg: None)
        self.close()
        for level in range(len(_STOP_ORDER)):
            keys = sorted(k for k in self.state.procs if _stop_level(k) == level)
            for key in keys:
                say(f"[{key}] stop")
            procs.stop([p for k in keys if (p := self.state.proc(k))], timeout=15.0)
        for host in self.spec.hosts:
            self._stop_leftovers(host.name, kill=True)
        for name in reversed(self.state.namespaces):
            leftovers = [p for pid in netns.pids(name) if (p := procs.identify(pid))]
            procs.kill(leftovers)
            say(f"[{name}] delete namespace")
            netns.delete(name)
        if self.state.frr_dir:
            shutil.rmtree(self.state.frr_dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        for root in (FRR_RUN_ROOT, DEFAULT_STATE_ROOT):  # ours; removed once no lab uses them
            with contextlib.suppress(OSError):
                root.rmdir()

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()


_STOP_ORDER = ("echo/", "node/", "frr/bgpd", "frr/zebra", "etcd")


def _stop_level(key: str) -> int:
    """Workload listeners first, then the nodes (together), then the router, etcd last."""
    return next((i for i, prefix in enumerate(_STOP_ORDER) if key.startswith(prefix)), 0)


@contextmanager
def running_lab(
    spec: LabSpec, state_dir: Path | None = None, progress: Progress | None = None
) -> Iterator[Lab]:
    """A lab that is up for the `with` block and down afterwards (also on failure)."""
    lab = Lab.create(spec, state_dir)
    try:
        lab.up(progress)
        yield lab
    finally:
        lab.down()
