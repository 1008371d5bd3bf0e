"""Using a running lab: names to namespaces and addresses, probes, commands, status."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from calico import programs
from calico.bgp.nodes import protocol_id
from calico.lab import frr, netns, procs
from calico.lab.base import BIN_DIR, LabError
from calico.lab.explain import RuleHit, moved, read_counters
from calico.lab.nodes import NodeOps
from calico.lab.probe import ProbeResult, run_probe
from calico.lab.report import Matrix
from calico.lab.spec import (
    bare,
    border_links,
    fabric_links,
    gateway_address,
    gateway_address6,
    tor_peer_address,
    tor_peer_address6,
)
from calico.lab.topology import TopologyOps
from calico.lab.workloads import WorkloadOps


class AccessOps(TopologyOps, NodeOps, WorkloadOps):
    def machines(self) -> list[str]:
        """Every name `exec` and `probe` accept."""
        spec = self.spec
        names = [h.name for h in spec.hosts] + list(self.state.workloads)
        names += [e.name for e in spec.externals] + self.routers()
        names += [spec.router.name] if spec.router else []
        return names + ([spec.border.name] if spec.border else [])

    def addresses(self, name: str) -> tuple[str | None, str | None]:
        """(IPv4, IPv6) of a machine, without prefix lengths."""
        spec = self.spec
        if name in self.state.workloads:
            ws = self.state.workloads[name]
            return ws.ipv4, ws.ipv6
        bridged_border = [spec.border] if spec.border and not self.fabric_border() else []
        entries: list[Any] = [*spec.hosts, *spec.externals, *bridged_border]
        for entry in entries:
            if entry.name == name:
                return _bare(entry.ipv4), _bare(entry.ipv6)
        for rack in spec.racks:  # a ToR, or the router (by its first rack's addresses)
            if self.rack_gateway(rack) == name:
                return gateway_address(rack), gateway_address6(rack)
        spines = {s.name: _bare(a) for _, s, _, a in reversed(fabric_links(spec))}
        spines6 = {s.name: _bare(a) for _, s, _, a in reversed(fabric_links(spec, 6))}
        border = self.fabric_border()
        if border is not None:  # its first spine link
            spines[border.name] = _bare(border_links(spec)[0][1])
            spines6[border.name] = next((_bare(a) for _, a, _ in border_links(spec, 6)), None)
        if name in spines:
            return spines[name], spines6.get(name)
        raise LabError(name, "look up", f"no machine of that name ({', '.join(self.machines())})")

    def netns_of(self, name: str) -> str:
        if name not in self.machines():
            raise LabError(
                name, "look up", f"no machine of that name ({', '.join(self.machines())})"
            )
        return self.netns(name)

    def probe(
        self,
        source: str,
        target: str,
        proto: str = "tcp",
        port: int | None = None,
        ipv6: bool = False,
        timeout: float = 1.0,
    ) -> ProbeResult:
        """Connect from `source` to `target` (a machine name or an IP address)."""
        ns = self.netns_of(source)
        address = self._target_address(target, ipv6)
        if proto != "icmp" and port is None:
            port = self._default_port(target, proto)
        return run_probe(ns, source, target, address, proto, port, timeout)

    def probe_explained(
        self,
        source: str,
        target: str,
        proto: str = "tcp",
        port: int | None = None,
        ipv6: bool = False,
        timeout: float = 1.0,
    ) -> tuple[ProbeResult, list[RuleHit]]:
        """`probe`, and the Calico rules of the ends' hosts whose counters it moved."""
        hosts = sorted({h for name in (source, target) if (h := self._host_of(name))})
        version = 6 if ipv6 else 4
        before = {h: read_counters(self.netns(h), version) for h in hosts}
        result = self.probe(source, target, proto, port, ipv6, timeout)
        hits = [
            hit for h in hosts for hit in moved(h, before[h], read_counters(self.netns(h), version))
        ]
        return result, hits

    def _host_of(self, name: str) -> str | None:
        """The host a workload (by name or address) runs on, or the host itself."""
        if name in {h.name for h in self.spec.hosts}:
            return name
        for ws in self.state.workloads.values():
            if name in (ws.name, ws.ipv4, ws.ipv6):
                return ws.host
        return None

    def _target_address(self, target: str, ipv6: bool) -> str:
        try:
            return str(ipaddress.ip_address(target))
        except ValueError:
            pass
        v4, v6 = self.addresses(target)
        address = v6 if ipv6 else v4
        if address is None:
            raise LabError(target, "probe", f"has no IPv{6 if ipv6 else 4} address")
        return address

    def _default_port(self, target: str, proto: str) -> int:
        ws = self.state.workloads.get(target)
        ports = [int(n) for p, n in (ws.ports if ws else []) if p == proto]
        if not ports:
            raise LabError(target, "probe", f"give --port: it listens on no {proto} port")
        return ports[0]

    def matrix(
        self,
        proto: str = "tcp",
        port: int | None = None,
        ipv6: bool = False,
        sources: Sequence[str] | None = None,
        targets: Sequence[str] | None = None,
    ) -> Matrix:
        """Probe every source -> target pair (default: every workload), in parallel."""
        srcs = list(sources if sources is not None else self.state.workloads)
        dsts = list(targets if targets is not None else self.state.workloads)
        pairs = [
            (s, d) for s in srcs for d in dsts if s != d and self._probeable(d, proto, port, ipv6)
        ]
        with ThreadPoolExecutor(8) as pool:
            results = pool.map(lambda p: self.probe(p[0], p[1], proto, port, ipv6).ok, pairs)
            cells: dict[tuple[str, str], bool | None] = dict(zip(pairs, results, strict=True))
        label = f"({proto}{'/' + str(port) if port else ''}{', IPv6' if ipv6 else ''})"
        return Matrix(srcs, dsts, cells, label)

    def _probeable(self, target: str, proto: str, port: int | None, ipv6: bool) -> bool:
        if self.addresses(target)[1 if ipv6 else 0] is None:
            return False
        ws = self.state.workloads.get(target)
        return (
            proto == "icmp"
            or port is not None
            or any(p == proto for p, _ in (ws.ports if ws else []))
        )

    def exec_env(self, name: str) -> dict[str, str]:
        """The environment for commands on a machine: on hosts, calicoctl and `calicoctl node
        status` find this node's datastore and CALICO_RUN_DIR."""
        env = dict(os.environ)
        env["PATH"] = f"{BIN_DIR}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        if name in {h.name for h in self.spec.hosts}:
            env.update(
                {
                    "NODENAME": name,
                    **self.etcd_env(name),
                    "CALICO_RUN_DIR": str(self.run_dir(name)),
                }
            )
        return env

    def exec_argv(self, name: str, argv: Sequence[str]) -> list[str]:
        """On routers, `vtysh` is pointed at the router's own FRR."""
        ns = self.netns_of(name)
        border = [self.spec.border.name] if self.spec.border else []
        if list(argv[:1]) == ["vtysh"] and name in self.routers() + border:
            argv = frr.vtysh_argv(self.router_dir(name), argv[1:])
        return ["ip", "netns", "exec", ns, *argv]

    def exec(
        self, name: str, argv: Sequence[str], timeout: float = 60.0
    ) -> programs.CompletedProcess[str]:
        return netns.run(
            self.exec_argv(name, argv), check=False, env=self.exec_env(name), timeout=timeout
        )

    def host_status(self, host: str) -> dict[str, Any]:
        run_dir = self.run_dir(host)
        spec = self.spec.host(host)
        sessions = [{"peer": s.name, "state": s.state, "info": s.info} for s in self.sessions(host)]
        doc: dict[str, Any] = {
            "name": host, "netns": self.netns(host), "ipv4": spec.ipv4, "ipv6": spec.ipv6,
            "node": self.proc_alive(f"node/{host}"),
            "felix": procs.alive(procs.from_pid_file(run_dir / "felix.pid")),
            "bird": procs.alive(procs.from_pid_file(run_dir / "bird.pid")) if self.spec.bgp
            else None,  # networking backend vxlan: no BIRD
            "bgp": sessions,
        }  # fmt: skip
        rack = self.spec.host_rack(spec) if spec.rack else None
        if rack is not None and rack.tor is not None:
            doc["tor"] = {"name": rack.tor.name, "info": _info(sessions, tor_peer_address(rack))}
            address6 = tor_peer_address6(rack)
            if address6 is not None:  # the rack has IPv6: its own session
                doc["tor"]["info6"] = _info(sessions, address6)
        return doc

    def status(self) -> dict[str, Any]:
        """Hosts, workloads and BGP sessions, as data (`calico lab status --json`)."""
        workloads = [
            {"name": w.name, "host": w.host, "namespace": w.namespace, "ipv4": w.ipv4,
             "ipv6": w.ipv6, "ports": [f"{p}/{n}" for p, n in w.ports]}
            for w in self.state.workloads.values()
        ]  # fmt: skip
        doc: dict[str, Any] = {
            "name": self.state.name, "state_dir": str(self.dir), "up": self.state.up,
            "etcd": self.state.etcd_endpoint, "workloads": workloads,
            "hosts": [self.host_status(h.name) for h in self.spec.hosts],
        }  # fmt: skip
        if self.spec.border is not None:
            doc["border"] = {"name": self.spec.border.name, "bgp": self.border_sessions()}
        if self.spec.router is not None:
            counts = self.vxlan_counts()
            vxlan = {"routed": counts.routed, "bridged": counts.bridged}
            doc["router"] = {"name": self.spec.router.name, "vxlan_packets": vxlan}
        if self.routers():
            doc["routers"] = [
                {"name": name, "role": role, "asNumber": asn, "bgp": self.router_sessions(name)}
                for name, role, asn in self.router_roles()
            ]
        return doc

    def border_sessions(self) -> dict[str, str]:
        border = self.spec.border
        return {} if border is None else self.router_sessions(border.name)

    def border_routes(self, family: str = "ipv4") -> dict[str, list[str]]:
        border = self.spec.border
        if border is None:
            return {}
        return frr.routes(self.border_dir, self.netns(border.name), family)


def _bare(address: str | None) -> str | None:
    return bare(address) if address else None


def _info(sessions: list[dict[str, str]], peer: str) -> str:
    """BIRD's info on the session with `peer` (its protocol is named after the address)."""
    name = f"_{protocol_id(peer)}"
    return next((s["info"] for s in sessions if s["peer"].endswith(name)), "no session")
