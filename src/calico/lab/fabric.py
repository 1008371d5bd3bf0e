"""The L3 fabric: racks behind FRR top-of-rack routers, ToRs linked to one or two FRR spines.

Each ToR's namespace holds its rack's bridge (the ToR's address on it is the rack's gateway);
hosts, and etcd, plug into it and route everything else via the ToR. Every ToR has a veth
/31 to every spine and eBGP over it; a rack with IPv6 gets the same in IPv6 (the ToR's address
on the bridge, a /127 on each link, sessions of their own). Hosts peer only with their ToR: in
model as-per-rack they share the rack's AS and the ToR reflects their routes to each other
(iBGP, next hop kept) and gives them what it learns from the spines with itself as next hop;
in as-per-host each host has its own AS and eBGP to the ToR. The routers use short BGP timers
(FABRIC_TIMERS) so a dead peer is noticed within seconds even when no link goes down.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from calico.lab import counters, frr, netns, procs
from calico.lab.base import LabBase, LabError, wait_for
from calico.lab.spec import (
    Rack,
    Tor,
    fabric_links,
    gateway_address,
    gateway_address6,
    rack_interface,
    rack_subnets,
    tor_peer_address,
)

RACK_BRIDGE = "br-rack"
FORWARDING = {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
FABRIC_TIMERS = (3, 9)  # keepalive, hold (seconds)
FABRIC_TIMEOUT = 60.0
FRR_RUN_ROOT = Path("/run/calico-lab-frr")


class FabricOps(LabBase):
    @property
    def frr_root(self) -> Path:
        """FRR drops to the `frr` user, which may not reach the state dir (pytest's are 0700):
        router files live under /run in a directory of the lab's own, removed by `down`."""
        if not self.state.frr_dir:
            self.state.frr_dir = str(FRR_RUN_ROOT / self.state.prefix)
            self.save()
        return Path(self.state.frr_dir)

    def router_dir(self, name: str) -> Path:
        root = self.frr_root
        root.mkdir(parents=True, exist_ok=True)
        for directory in (root.parent, root):  # traversable by the `frr` user
            directory.chmod(0o755)
        return root / name

    def tors(self) -> list[tuple[Rack, Tor]]:
        return [(r, r.tor) for r in self.spec.racks if r.tor is not None]

    def routers(self) -> list[str]:
        """The fabric's (FRR) routers: ToRs, then spines."""
        return [t.name for _, t in self.tors()] + [s.name for s in self.spec.spines]

    def router_roles(self) -> list[tuple[str, str, int]]:
        """(name, role, AS) of each router, for status."""
        tors = [(t.name, f"ToR of {r.name}", t.asNumber) for r, t in self.tors()]
        return tors + [(s.name, "spine", s.asNumber) for s in self.spec.spines]

    def rack_gateway(self, rack: Rack) -> str:
        """The machine holding the rack's bridge and gateway address: its ToR or the router."""
        if rack.tor is not None:
            return rack.tor.name
        assert self.spec.router is not None
        return self.spec.router.name

    def rack_bridge(self, rack: Rack) -> str:
        """A ToR has its rack's bridge, the router one per rack (`br-rack<index>`)."""
        return RACK_BRIDGE if rack.tor else f"{RACK_BRIDGE}{self.spec.racks.index(rack)}"

    def build_racks(self) -> None:
        """Namespaces, rack bridges and ToR-spine links (the routers start later)."""
        router = [self.spec.router.name] if self.spec.router else []
        for name in self.routers() + router:
            netns.sysctl(self.add_netns(name), FORWARDING)
        for rack in self.spec.racks:
            gateways = [gateway_address(rack)] + [a for a in (gateway_address6(rack),) if a]
            loopback = rack.tor is not None and rack.tor.loopback is not None
            bridge = self.rack_bridge(rack)
            netns.ip_batch(
                self.netns(self.rack_gateway(rack)),
                [
                    f"link add {bridge} type bridge mcast_snooping 0",
                    f"link set {bridge} up",
                    *netns.address_commands(
                        bridge, [str(rack_interface(rack, a)) for a in gateways]
                    ),
                    *([f"addr add {tor_peer_address(rack)}/32 dev lo"] if loopback else []),
                ],
            )
        if self.spec.router is not None:
            bridges = [self.rack_bridge(r) for r in self.spec.racks]
            counters.install(self.netns(self.spec.router.name), bridges)
        links6 = {(r.name, s.name): (t, a) for r, s, t, a in fabric_links(self.spec, 6)}
        for rack, spine, tor_addr, spine_addr in fabric_links(self.spec):
            tor_ns, spine_ns = self.netns(self.rack_gateway(rack)), self.netns(spine.name)
            tor_if, spine_if = self._link_names(rack.name, spine.name)
            netns.veth(tor_ns, tor_if, spine_ns, spine_if)
            tor6, spine6 = links6.get((rack.name, spine.name), (None, None))
            tor_addrs, spine_addrs = [tor_addr, *([tor6] if tor6 else [])], [spine_addr]
            spine_addrs += [spine6] if spine6 else []
            netns.ip_batch(tor_ns, netns.address_commands(tor_if, tor_addrs))
            netns.ip_batch(spine_ns, netns.address_commands(spine_if, spine_addrs))

    def vxlan_counts(self) -> counters.VxlanCounts:
        """The router's counts of VXLAN packets it routed between racks and bridged within."""
        if self.spec.router is None:
            raise LabError(self.spec.name, "VXLAN counters", "the lab has no router")
        return counters.read(self.netns(self.spec.router.name))

    def _link_names(self, rack: str, spine: str) -> tuple[str, str]:
        """(ToR side, spine side): `s<spine index>` and `t<rack index>`."""
        racks = [r.name for r in self.spec.racks]
        spines = [s.name for s in self.spec.spines]
        return f"s{spines.index(spine)}", f"t{racks.index(rack)}"

    def plug_rack(self, entity_ns: str, rack: Rack, address: str, ipv6: str | None = None) -> None:
        """`eth0` in `entity_ns` on the rack's bridge, with `address` (and `ipv6`), default
        routes via the rack's gateway (its ToR or the router)."""
        gateway_ns = self.netns(self.rack_gateway(rack))
        port = f"h{self.state.namespaces.index(entity_ns)}"
        netns.veth(gateway_ns, port, entity_ns, "eth0")
        netns.ip(gateway_ns, "link", "set", port, "master", self.rack_bridge(rack))
        addresses = [address, *([ipv6] if ipv6 else [])]
        routes = [f"route add default via {gateway_address(rack)}"]
        routes += [f"route add default via {gateway_address6(rack)}"] if ipv6 else []
        netns.ip_batch(
            entity_ns,
            [
                *netns.address_commands("eth0", [str(rack_interface(rack, a)) for a in addresses]),
                *routes,
            ],
        )

    def router_config(self, name: str) -> str:
        """bgpd.conf of a ToR (hosts of its rack and the spines) or a spine (every ToR)."""
        spec = self.spec
        links = fabric_links(spec) + fabric_links(spec, 6)
        rack, tor = next(((r, t) for r, t in self.tors() if t.name == name), (None, None))
        if rack is not None and tor is not None:
            as_number = tor.asNumber
            reflect = spec.model == "as-per-rack"
            neighbors = [
                frr.Neighbor(h.ipv4.split("/")[0], spec.host_as(h) or spec.asNumber,
                             rr_client=reflect, next_hop_self=reflect,
                             password=tor.password,
                             update_source=tor.loopback and tor_peer_address(rack))
                for h in spec.hosts
                if h.rack == rack.name
            ]  # fmt: skip
            neighbors += [  # IPv6: with the ToR's rack address, never its (IPv4) loopback
                frr.Neighbor(h.ipv6.split("/")[0], spec.host_as(h) or spec.asNumber,
                             rr_client=reflect, next_hop_self=reflect,
                             password=tor.password)
                for h in spec.hosts
                if h.rack == rack.name and h.ipv6
            ]  # fmt: skip
            neighbors += [
                frr.Neighbor(s_addr.split("/")[0], s.asNumber)
                for r, s, _, s_addr in links
                if r == rack
            ]
            router_id = gateway_address(rack)
            networks = [str(net) for net in rack_subnets(rack)]
        else:
            spine = next(s for s in spec.spines if s.name == name)
            as_number, networks = spine.asNumber, []
            neighbors = [
                frr.Neighbor(t_addr.split("/")[0], t.asNumber)
                for r, s, t_addr, _ in links
                if s == spine and (t := r.tor)
            ]
            router_id = next(a for _, s, _, a in links if s == spine).split("/")[0]
        return frr.bgpd_config(name, as_number, router_id, neighbors, networks, FABRIC_TIMERS)

    def start_router(self, name: str) -> None:
        """Start the router's FRR (zebra and bgpd)."""
        if name not in self.routers():
            raise LabError(name, "start router", f"not one of the routers ({self.routers()})")
        config = self.router_config(name)
        zebra, bgpd = frr.start(self.router_dir(name), self.netns(name), config, name)
        self.record_proc(f"frr/zebra/{name}", zebra)
        self.record_proc(f"frr/bgpd/{name}", bgpd)

    def stop_router(self, name: str) -> None:
        """SIGTERM bgpd, then zebra (zebra removes the routes it installed)."""
        self._end_router(name, lambda proc: procs.stop([proc], timeout=10.0))

    def fail_spine(self, name: str) -> None:
        """A spine dies: its links go down and its FRR is killed (its routes stay, unused)."""
        self._set_spine_links(name, "down")
        self._end_router(name, lambda proc: procs.kill([proc]))

    def _end_router(self, name: str, end: Callable[[procs.Proc], object]) -> None:
        for daemon in ("bgpd", "zebra"):
            key = f"frr/{daemon}/{name}"
            proc = self.state.proc(key)
            if proc is not None:
                end(proc)
            self.record_proc(key, None)

    def restore_spine(self, name: str) -> None:
        """Undo `fail_spine`: links up, FRR started again."""
        self._set_spine_links(name, "up")
        self.start_router(name)

    def _set_spine_links(self, name: str, state: str) -> None:
        if name not in {s.name for s in self.spec.spines}:
            raise LabError(name, f"set spine links {state}", "not one of the spines")
        links = [self._link_names(r.name, name)[1] for r in self.spec.racks]
        netns.ip_batch(self.netns(name), [f"link set {link} {state}" for link in links])

    def router_sessions(self, name: str) -> dict[str, str]:
        """Neighbor address -> BGP state ({} when the router's bgpd is not running)."""
        if not self.proc_alive(f"frr/bgpd/{name}"):
            return {}
        return frr.sessions(self.router_dir(name), self.netns(name))

    def wait_fabric(self, timeout: float = FABRIC_TIMEOUT) -> None:
        """Until every ToR has a BGP route to every other rack's subnets (through the spines)."""
        subnets = {str(net) for r in self.spec.racks for net in rack_subnets(r)}

        def missing() -> str | None:
            for _, tor in self.tors():
                name = tor.name
                directory, ns = self.router_dir(name), self.netns(name)
                table = {**frr.routes(directory, ns), **frr.routes(directory, ns, "ipv6")}
                lacking = sorted(subnets - set(table))
                if lacking:
                    return f"{name} has no route to {', '.join(lacking)}"
            return None

        if wait_for(lambda: None if missing() else True, timeout, 0.2) is None:
            raise LabError("fabric", "ToR-spine routing", missing() or "?")
