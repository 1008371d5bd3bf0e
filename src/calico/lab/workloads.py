"""Workloads: a namespace each, wired by the CNI plugin, with listeners on the named ports."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import sys

from calico.lab import cni, netns, procs
from calico.lab.base import LabBase, LabError, wait_for
from calico.lab.labfile import pool_name
from calico.lab.spec import Workload, parse_ports
from calico.lab.state import WorkloadState


class WorkloadOps(LabBase):
    def _families(self) -> tuple[bool, bool]:
        versions = {ipaddress.ip_network(p.cidr, strict=False).version for p in self.spec.pools}
        return 4 in versions, 6 in versions

    def _pools(self, wl: Workload) -> tuple[list[str], list[str]]:
        """The workload's requested pools, by IP version."""
        by_name = {pool_name(self.spec, i): p for i, p in enumerate(self.spec.pools)}
        v4: list[str] = []
        v6: list[str] = []
        for name in wl.ipPools:
            if name not in by_name:
                raise LabError(wl.name, "add workload", f"no pool {name!r} in this lab")
            version = ipaddress.ip_network(by_name[name].cidr, strict=False).version
            (v4 if version == 4 else v6).append(name)
        return v4, v6

    def add_workload(self, wl: Workload) -> WorkloadState:
        """Create the workload's namespace, CNI ADD it on its host, start its listeners."""
        if wl.name in self.state.workloads:
            raise LabError(wl.name, "add workload", "a workload of that name exists")
        if wl.host not in {h.name for h in self.spec.hosts}:
            raise LabError(wl.name, "add workload", f"no host {wl.host!r} in this lab")
        ns = self.step(wl.name, "namespace", lambda: self.add_netns(wl.name))
        container_id = hashlib.sha256(f"{self.state.prefix}/{wl.name}".encode()).hexdigest()
        ws = WorkloadState(
            wl.name,
            wl.host,
            ns,
            wl.namespace,
            container_id,
            ports=[[p, n] for p, n in parse_ports(wl.ports)],
        )
        log = self.dir / "cni" / "cni.log"
        conf = cni.net_conf(
            self.etcd_env(wl.host),
            wl.host,
            dict(wl.labels),
            self._families(),
            log,
            self.mtu_file(wl.host),
            self._pools(wl),
        )
        ws.result = self.step(
            wl.name, f"CNI ADD on {wl.host}", lambda: cni.invoke(self._call(ws), "ADD", conf)
        )
        ws.ipv4, ws.ipv6 = cni.addresses(ws.result)
        with self.store.lock:
            self.state.workloads[wl.name] = ws
            self.save()
        if ws.ports:
            self.step(wl.name, "listeners", lambda: self._start_listeners(ws))
        return ws

    def _call(self, ws: WorkloadState) -> cni.CniCall:
        return cni.CniCall(
            self.cni_bin, self.netns(ws.host), ws.netns, ws.container_id, ws.name, ws.namespace
        )

    def _start_listeners(self, ws: WorkloadState) -> None:
        argv = [sys.executable, "-m", "calico.lab.echo", *(f"{p}/{n}" for p, n in ws.ports)]
        log = self.dir / "workloads" / f"{ws.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = procs.spawn(argv, log, netns=ws.netns)
        self.record_proc(f"echo/{ws.name}", proc)
        if wait_for(lambda: True if self._listening(ws) else None, 10.0) is None:
            raise RuntimeError(f"listeners did not start (see {log})")

    def _listening(self, ws: WorkloadState) -> bool:
        out = netns.in_ns(ws.netns, ["ss", "-Hlntu"], check=False).stdout
        return all(f":{port} " in out for _, port in ws.ports)

    def remove_workload(self, name: str) -> None:
        """CNI DEL (with the ADD result as prevResult), then remove its namespace."""
        ws = self.state.workloads.get(name)
        if ws is None:
            raise LabError(name, "remove workload", "no such workload")
        echo = self.state.proc(f"echo/{name}")
        if echo is not None:
            procs.stop([echo], 5.0)
            self.record_proc(f"echo/{name}", None)
        log = self.dir / "cni" / "cni.log"
        conf = cni.net_conf(
            self.etcd_env(ws.host), ws.host, {}, self._families(), log, self.mtu_file(ws.host)
        )
        conf["prevResult"] = ws.result
        self.step(name, f"CNI DEL on {ws.host}", lambda: cni.invoke(self._call(ws), "DEL", conf))
        netns.delete(ws.netns)
        with self.store.lock:
            del self.state.workloads[name]
            if ws.netns in self.state.namespaces:
                self.state.namespaces.remove(ws.netns)
            self.save()

    def route_problem(self, ws: WorkloadState, hosts: list[str] | None = None) -> str | None:
        """Why some host cannot route to the workload yet (None when every host can)."""
        for host in self.spec.hosts:
            if hosts is not None and host.name not in hosts:
                continue
            for address in (ws.ipv4, ws.ipv6):
                if address is None:
                    continue
                if host.name == ws.host:
                    route = _route_get(self.netns(host.name), address)
                    if not str(route.get("dev", "") if route else "").startswith("cali"):
                        return f"{host.name} has no route to its workload {ws.name} ({address})"
                elif _remote_route(self.netns(host.name), address) is None:
                    return f"{host.name} has no route to {ws.name} ({address})"
        return None

    def wait_routes(
        self, names: list[str] | None = None, hosts: list[str] | None = None, timeout: float = 30.0
    ) -> None:
        """Until every host (or those named) routes to each workload (or those named): its
        own over the cali veth, the others' through a route via a gateway (BIRD's, or
        Felix's over VXLAN or direct)."""
        targets = [self.state.workloads[n] for n in names or list(self.state.workloads)]

        def problem() -> str | None:
            return next((p for ws in targets if (p := self.route_problem(ws, hosts))), None)

        if wait_for(lambda: None if problem() else True, timeout, 0.1) is None:
            raise LabError("routes", "wait for convergence", problem() or "?")


def _remote_route(ns: str, address: str) -> dict[str, object] | None:
    """The most specific route via a gateway to `address`: learnt by BIRD, or Felix's to a
    VXLAN pool's block (not a default route: with racks the default route already points at
    the gateway; blackholes have no gateway)."""
    family = "-6" if ":" in address else "-4"
    argv = ["ip", "-n", ns, family, "-j", "route", "show", "match", address]
    out = netns.run(argv, check=False)
    routes = json.loads(out.stdout or "[]")
    routes = [r for r in routes if r.get("dst") != "default" and r.get("gateway")]
    return max(routes, key=lambda r: int(str(r["dst"]).partition("/")[2] or 32), default=None)


def _route_get(ns: str, address: str) -> dict[str, object] | None:
    proc = netns.run(["ip", "-n", ns, "-j", "route", "get", address], check=False)
    if proc.returncode != 0:
        return None
    routes = json.loads(proc.stdout or "[]")
    return routes[0] if routes else None
