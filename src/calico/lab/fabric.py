"""The L3 fabric: racks behind FRR top-of-rack routers, ToRs linked to one or two FRR spines.

Each ToR's namespace holds its rack's bridge (the ToR's address on it is the rack's gateway);
hosts, and etcd, plug into it and route everything else via the ToR. Every ToR has a veth
/31 to every spine and eBGP over it; a rack with IPv6 gets the same in IPv6 (the ToR's address
on the bridge, a /127 on each link, sessions of their own). Hosts peer only with their ToR: in
model as-per-rack they share the rack's AS and the ToR reflects their routes to each other
(iBGP, next hop kept) and gives them what it learns from the spines with itself as next hop;
in as-per-host each host has its own AS and eBGP to the ToR. A border router, if the lab has
one, is linked to every spine the same way (eBGP) and routes the network behind it. The routers
use short BGP timers (FABRIC_TIMERS) so a dead peer is noticed within seconds even when no link
goes down (`hang_spine`), and send updates at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from calico.lab import counters, frr, netns, procs
from calico.lab.base import LabBase, LabError, wait_for
from calico.lab.spec import (
    Border,
    Rack,
    Spine,
    Tor,
    bare,
    border_gateways,
    border_links,
    border_networks,
    fabric_links,
    gateway_address,
    gateway_address6,
    rack_interface,
    rack_subnets,
    tor_peer_address,
    tor_peer_address6,
)

RACK_BRIDGE = "br-rack"
EXT_BRIDGE = "br-ext"  # the border router's network
BORDER_PORT = "border"  # a spine's link to the border router ("b" would read as `brd`)
FORWARDING = {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
# A router's kernel skips a multipath nexthop whose link lost carrier at once (by default it
# keeps hashing flows to it until FRR rewrites the route).
LINKDOWN = {
    "net.ipv4.conf.all.ignore_routes_with_linkdown": "1",
    "net.ipv6.conf.all.ignore_routes_with_linkdown": "1",
    "net.ipv6.conf.default.ignore_routes_with_linkdown": "1",
}
FABRIC_TIMERS = (3, 9)  # keepalive, hold (seconds)
FABRIC_TIMEOUT = 60.0
FRR_RUN_ROOT = Path("/run/calico-lab-frr")
HUNG = "calico-lab-hung"  # the nftables table that silences a hung spine
HUNG_RULES = f"""table inet {HUNG} {{
  chain input {{ type filter hook input priority -300; policy drop; }}
  chain forward {{ type filter hook forward priority -300; policy drop; }}
  chain output {{ type filter hook output priority -300; policy drop; }}
}}
"""


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
        """The fabric's (FRR) routers: ToRs, spines, then the border router linked to them."""
        border = self.fabric_border()
        names = [t.name for _, t in self.tors()] + [s.name for s in self.spec.spines]
        return names + ([border.name] if border else [])

    def fabric_border(self) -> Border | None:
        """The border router when it is part of the L3 fabric (linked to the spines)."""
        return self.spec.border if self.spec.spines else None

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
        """Namespaces, rack bridges, ToR-spine and border-spine links (routers start later)."""
        router = [self.spec.router.name] if self.spec.router else []
        for name in self.routers() + router:
            netns.sysctl(self.add_netns(name), {**FORWARDING, **LINKDOWN})
        for rack in self.spec.racks:
            gateways = [gateway_address(rack)] + [a for a in (gateway_address6(rack),) if a]
            tor = rack.tor
            loopbacks = [f"{a.split('/')[0]}/{32 if ':' not in a else 128}"
                         for a in (tor.loopback, tor.loopback6) if a] if tor else []  # fmt: skip
            netns.ip_batch(
                self.netns(self.rack_gateway(rack)),
                [
                    *netns.bridge_commands(
                        self.rack_bridge(rack), [str(rack_interface(rack, a)) for a in gateways]
                    ),
                    *netns.address_commands("lo", loopbacks),
                ],
            )
        if self.spec.router is not None:
            bridges = [self.rack_bridge(r) for r in self.spec.racks]
            counters.install(self.netns(self.spec.router.name), bridges)
        links6 = {(r.name, s.name): (t, a) for r, s, t, a in fabric_links(self.spec, 6)}
        for rack, spine, tor_addr, spine_addr in fabric_links(self.spec):
            tor6, spine6 = links6.get((rack.name, spine.name), (None, None))
            self._link(self.rack_gateway(rack), spine.name, self._link_names(rack.name, spine.name),
                       [tor_addr, *([tor6] if tor6 else [])],
                       [spine_addr, *([spine6] if spine6 else [])])  # fmt: skip
        border = self.fabric_border()
        if border is not None:
            self._build_border_links(border)

    def _build_border_links(self, border: Border) -> None:
        """The border's links to the spines (`s<spine index>` to `border`), its network's bridge."""
        links6 = {s.name: (a, b) for s, a, b in border_links(self.spec, 6)}
        for i, (spine, addr, spine_addr) in enumerate(border_links(self.spec)):
            addr6, spine6 = links6.get(spine.name, (None, None))
            self._link(border.name, spine.name, (f"s{i}", BORDER_PORT),
                       [addr, *([addr6] if addr6 else [])],
                       [spine_addr, *([spine6] if spine6 else [])])  # fmt: skip
        gateways = border_gateways(border)
        if gateways:
            netns.ip_batch(self.netns(border.name), netns.bridge_commands(EXT_BRIDGE, gateways))

    def _link(
        self, a: str, b: str, names: tuple[str, str], addrs_a: list[str], addrs_b: list[str]
    ) -> None:
        """A point-to-point veth between routers `a` and `b` with their addresses on it."""
        ns_a, ns_b = self.netns(a), self.netns(b)
        netns.veth(ns_a, names[0], ns_b, names[1])
        netns.ip_batch(ns_a, netns.address_commands(names[0], addrs_a))
        netns.ip_batch(ns_b, netns.address_commands(names[1], addrs_b))

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
        """bgpd.conf of a ToR (hosts of its rack and the spines), a spine (every ToR and the
        border) or the border router (every spine)."""
        spec = self.spec
        tor = next(((r, t) for r, t in self.tors() if t.name == name), None)
        border = self.fabric_border()
        if tor is not None:
            return self._tor_config(*tor)
        if border is not None and border.name == name:
            neighbors = [frr.Neighbor(bare(a), s.asNumber) for s, _, a in self._border_links()]
            nets = [str(n) for n in border_networks(border)]
            router_id = bare(border_links(spec)[0][1])
            return frr.bgpd_config(name, border.asNumber, router_id, neighbors, nets, FABRIC_TIMERS)
        spine = next(s for s in spec.spines if s.name == name)
        links = fabric_links(spec) + fabric_links(spec, 6)
        neighbors = [frr.Neighbor(bare(t_addr), t.asNumber)
                     for r, s, t_addr, _ in links if s == spine and (t := r.tor)]  # fmt: skip
        neighbors += [frr.Neighbor(bare(a), border.asNumber)
                      for s, a, _ in self._border_links() if s == spine and border]  # fmt: skip
        router_id = bare(next(a for _, s, _, a in links if s == spine))
        return frr.bgpd_config(name, spine.asNumber, router_id, neighbors, [], FABRIC_TIMERS)

    def _border_links(self) -> list[tuple[Spine, str, str]]:
        return border_links(self.spec) + border_links(self.spec, 6)

    def _tor_config(self, rack: Rack, tor: Tor) -> str:
        """Hosts of its rack (reflected in as-per-rack; from the loopbacks when it has them),
        the spines over the links."""
        spec = self.spec
        reflect = spec.model == "as-per-rack"
        hosts = [h for h in spec.hosts if h.rack == rack.name]
        sources = {4: tor.loopback and tor_peer_address(rack), 6: tor.loopback6 and
                   tor_peer_address6(rack)}  # fmt: skip
        neighbors = [
            frr.Neighbor(bare(address), spec.host_as(h) or spec.asNumber,
                         rr_client=reflect, next_hop_self=reflect, password=tor.password,
                         update_source=sources[version] or None)
            for version in (4, 6)
            for h in hosts
            if (address := h.ipv4 if version == 4 else h.ipv6)
        ]  # fmt: skip
        links = fabric_links(spec) + fabric_links(spec, 6)
        neighbors += [frr.Neighbor(bare(s_addr), s.asNumber) for r, s, _, s_addr in links
                      if r == rack]  # fmt: skip
        networks = [str(net) for net in rack_subnets(rack)]
        router_id = gateway_address(rack)
        return frr.bgpd_config(tor.name, tor.asNumber, router_id, neighbors, networks,
                               FABRIC_TIMERS)  # fmt: skip

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

    def hang_spine(self, name: str) -> None:
        """A spine hangs with its links up: it drops every packet, to forward or for itself
        (BGP included), so its neighbours notice only when their hold timers expire."""
        self._check_spine(name, "hang")
        netns.in_ns(self.netns(name), ["nft", "-f", "-"], stdin=HUNG_RULES)

    def unhang_spine(self, name: str) -> None:
        self._check_spine(name, "unhang")
        netns.in_ns(self.netns(name), ["nft", "delete", "table", "inet", HUNG])

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

    def _check_spine(self, name: str, what: str) -> None:
        if name not in {s.name for s in self.spec.spines}:
            raise LabError(name, f"{what} spine", "not one of the spines")

    def _set_spine_links(self, name: str, state: str) -> None:
        self._check_spine(name, f"set links {state} of")
        links = [self._link_names(r.name, name)[1] for r in self.spec.racks]
        links += [BORDER_PORT] if self.fabric_border() else []
        netns.ip_batch(self.netns(name), [f"link set {link} {state}" for link in links])

    def router_sessions(self, name: str) -> dict[str, str]:
        """Neighbor address -> BGP state ({} when the router's bgpd is not running)."""
        if not self.proc_alive(f"frr/bgpd/{name}"):
            return {}
        return frr.sessions(self.router_dir(name), self.netns(name))

    def wait_fabric(self, timeout: float = FABRIC_TIMEOUT) -> None:
        """Until every ToR has a BGP route to every other rack's subnets (through the spines)."""
        subnets = {str(net) for r in self.spec.racks for net in rack_subnets(r)}
        border = self.fabric_border()
        if border is not None:
            subnets |= {str(n) for n in border_networks(border)}

        def missing() -> str | None:
            for name in [t.name for _, t in self.tors()] + ([border.name] if border else []):
                directory, ns = self.router_dir(name), self.netns(name)
                table = {**frr.routes(directory, ns), **frr.routes(directory, ns, "ipv6")}
                lacking = sorted(subnets - set(table))
                if lacking:
                    return f"{name} has no route to {', '.join(lacking)}"
            return None

        if wait_for(lambda: None if missing() else True, timeout, 0.2) is None:
            raise LabError("fabric", "ToR-spine routing", missing() or "?")
