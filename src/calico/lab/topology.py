"""Building a lab's machines: the fabric bridge, etcd, hosts, external machines, the border.

The fabric is a bridge in its own namespace; every machine on it gets `eth0` (a veth whose
other end is a bridge port) with the addresses the lab file gives. Hosts get `default dev
eth0` (proxy ARP for workloads answers only for destinations routed via another interface)
and learn everything else through BGP. External machines behind the border router sit on a
bridge in the router's namespace and use the router as their default gateway. In an L3
fabric (`calico.lab.fabric`) hosts and etcd sit on their rack's bridge instead, behind the ToR.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from calico.lab import etcd, frr, netns, procs
from calico.lab.base import tail
from calico.lab.fabric import EXT_BRIDGE, FORWARDING, FabricOps
from calico.lab.pki import ETCD_SERVER, host_client
from calico.lab.spec import (
    External,
    Host,
    border_gateways,
    border_networks,
    etcd_addresses,
    fabric_interface,
    rack_of,
)

FABRIC = "fabric"
ETCD = "etcd"
BRIDGE = "br0"


class TopologyOps(FabricOps):
    def build_fabric(self) -> None:
        netns.ip_batch(self.add_netns(FABRIC), netns.bridge_commands(BRIDGE, []))

    def _plug(self, entity_ns: str, addresses: list[str]) -> None:
        """`eth0` in `entity_ns`, plugged into the fabric bridge, with `addresses`."""
        fabric_ns = self.netns(FABRIC)
        port = f"p{self.state.namespaces.index(entity_ns)}"
        netns.veth(fabric_ns, port, entity_ns, "eth0")
        netns.ip(fabric_ns, "link", "set", port, "master", BRIDGE)
        netns.ip_batch(entity_ns, netns.address_commands("eth0", addresses))

    def _fabric_addrs(self, ipv4: str | None, ipv6: str | None) -> list[str]:
        out = [str(fabric_interface(self.spec, ipv4, 4))] if ipv4 else []
        return out + ([str(fabric_interface(self.spec, ipv6, 6))] if ipv6 else [])

    def etcd_members(self) -> list[etcd.Member]:
        """The lab's etcd members: `etcd`, then `etcd-1`, `etcd-2`... for a cluster."""
        return [
            etcd.Member(name, address, self.dir / name, self.spec.etcd.tls)
            for i, address in enumerate(etcd_addresses(self.spec))
            for name in [ETCD if i == 0 else f"{ETCD}-{i}"]
        ]

    def build_etcd(self) -> None:
        """Every member in its namespace, started together (a cluster needs its quorum to
        answer), then waited for."""
        members = self.etcd_members()
        pki = self.pki
        if pki is not None:
            pki.make_ca()
            pki.make_server(ETCD_SERVER, [m.address for m in members])
            for host in self.spec.hosts:
                pki.make_client(host_client(host.name))
        for member in members:
            ns = self.add_netns(member.name)
            rack = rack_of(self.spec, member.address)
            if rack is not None:
                self.plug_rack(ns, rack, member.address)
            else:
                self._plug(ns, self._fabric_addrs(member.address, None))
        self.state.etcd_endpoint = ",".join(m.client_url for m in members)
        self.state.etcd_unix = ",".join(m.unix_endpoint for m in members)
        started = []
        for member in members:  # each recorded at once, so `down` stops it after a failure
            started.append(etcd.start_member(member, members, self.netns(member.name), pki))
            self.record_proc(member.name, started[-1])
        for member, proc in zip(members, started, strict=True):
            self._wait_etcd(member, proc)

    def kill_etcd_member(self, member: etcd.Member) -> None:
        """SIGKILL one member (a fault: its data stays for a restart)."""
        procs.kill([p for p in [self.state.proc(member.name)] if p is not None])

    def restart_etcd_member(self, member: etcd.Member) -> None:
        """Start a killed member again from its data and wait until it answers."""
        proc = etcd.start_member(member, self.etcd_members(), self.netns(member.name), self.pki)
        self.record_proc(member.name, proc)
        self._wait_etcd(member, proc)

    def _wait_etcd(self, member: etcd.Member, proc: procs.Proc) -> None:
        try:
            etcd.wait_healthy(proc, member)
        except etcd.EtcdStartError as exc:
            raise RuntimeError(f"{exc}\n    {tail(member.log_file)}") from None

    def build_host(self, host: Host) -> None:
        ns = self.add_netns(host.name)
        if host.rack is not None:
            self.plug_rack(ns, self.spec.host_rack(host), host.ipv4, host.ipv6)
        else:
            self._plug(ns, self._fabric_addrs(host.ipv4, host.ipv6))
            netns.ip(ns, "route", "add", "default", "dev", "eth0")
        self.run_dir(host.name).mkdir(parents=True, exist_ok=True)

    def build_external(self, ext: External) -> None:
        ns = self.add_netns(ext.name)
        rack = rack_of(self.spec, ext.ipv4) if ext.ipv4 and ext.behind is None else None
        if rack is not None:  # in a rack's subnet, behind its ToR or the router
            self.plug_rack(ns, rack, ext.ipv4 or "", ext.ipv6)
            return
        if ext.behind is None:
            self._plug(ns, self._fabric_addrs(ext.ipv4, ext.ipv6))
            if ext.gateway:
                netns.ip(ns, "route", "add", "default", "via", ext.gateway.split("/")[0])
            return
        border = self.spec.border
        assert border is not None
        port = f"x{self.state.namespaces.index(ns)}"
        netns.veth(self.netns(border.name), port, ns, "eth0")
        netns.ip(self.netns(border.name), "link", "set", port, "master", EXT_BRIDGE)
        commands = []
        for address, net in ((ext.ipv4, border.network.ipv4), (ext.ipv6, border.network.ipv6)):
            if address and net:
                network = ipaddress.ip_network(net, strict=False)
                iface = f"{address.split('/')[0]}/{network.prefixlen}"
                commands += netns.address_commands("eth0", [iface])
                commands.append(f"route add default via {next(network.hosts())}")
        netns.ip_batch(ns, commands)

    def build_border(self) -> None:
        """The border router on the bridged fabric (in the L3 fabric it is one of the routers)."""
        border = self.spec.border
        assert border is not None and border.ipv4 is not None  # labfile: required here
        ns = self.add_netns(border.name)
        self._plug(ns, self._fabric_addrs(border.ipv4, border.ipv6))
        netns.sysctl(ns, FORWARDING)
        gateways = border_gateways(border)
        if gateways:
            netns.ip_batch(ns, netns.bridge_commands(EXT_BRIDGE, gateways))
        neighbors = []
        for host in self.spec.hosts:
            asn = host.asNumber or self.spec.asNumber
            neighbors.append(frr.Neighbor(host.ipv4.split("/")[0], asn))
            if host.ipv6 and border.ipv6:
                neighbors.append(frr.Neighbor(host.ipv6.split("/")[0], asn))
        networks = [str(n) for n in border_networks(border)]
        router_id = border.ipv4.split("/")[0]
        config = frr.bgpd_config(
            border.name, border.asNumber, router_id, neighbors, networks, graceful_restart=True
        )
        zebra, bgpd = frr.start(self.border_dir, ns, config, border.name)
        self.record_proc(f"frr/zebra/{border.name}", zebra)
        self.record_proc(f"frr/bgpd/{border.name}", bgpd)

    @property
    def border_dir(self) -> Path:
        assert self.spec.border is not None
        return self.router_dir(self.spec.border.name)
