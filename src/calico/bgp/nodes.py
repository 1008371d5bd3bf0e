"""What BGP needs to know about every Calico node, and the cluster-wide BGP settings (pure).

Inputs are v3 resources (Node, BGPConfiguration); outputs are small frozen values, the
equivalent of confd's v1 keys (`/calico/bgp/v1/host/<node>/ip_addr_v4`, `as_num`,
`rr_cluster_id`, `listen_port`, `/calico/bgp/v1/global/as_num`, `node_mesh`...), with
Calico's defaults applied (AS 64512, mesh on).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from calico.bgp.secrets import SecretRef, password_ref
from calico.model.fields import duration_seconds
from calico.model.network import BGPConfiguration, Node

DEFAULT_AS = 64512
NODE_CONFIG_PREFIX = "node."


@dataclass(frozen=True, slots=True)
class NodeBgp:
    """One node's BGP identity (confd's `/calico/bgp/v1/host/<name>/...`)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ipv4: str | None = None
    ipv6: str | None = None
    network_v4: str | None = None
    network_v6: str | None = None
    as_number: int | None = None
    rr_cluster_id: str | None = None

    def address(self, version: int) -> str | None:
        return self.ipv4 if version == 4 else self.ipv6

    def network(self, version: int) -> str | None:
        return self.network_v4 if version == 4 else self.network_v6


@dataclass(frozen=True, slots=True)
class Settings:
    """Cluster-wide settings from BGPConfiguration `default`, plus per-node listen ports."""

    as_number: int = DEFAULT_AS
    mesh_enabled: bool = True
    listen_port: int | None = None
    node_listen_ports: Mapping[str, int] = field(default_factory=dict)
    mesh_restart_time: int | None = None
    mesh_password: SecretRef | None = None
    strict_bind: bool = False
    ignored_interfaces: tuple[str, ...] = ()

    def port_of(self, node: str) -> int | None:
        """The port a node listens on (its node.<name> config, else the global one)."""
        return self.node_listen_ports.get(node, self.listen_port)


def node_bgp(node: Node) -> NodeBgp:
    bgp = node.spec.bgp
    labels = dict(node.metadata.labels or {})
    if bgp is None:
        return NodeBgp(node.name, labels)
    v4 = ipaddress.ip_interface(bgp.ipv4Address) if bgp.ipv4Address else None
    v6 = ipaddress.ip_interface(bgp.ipv6Address) if bgp.ipv6Address else None
    return NodeBgp(
        name=node.name,
        labels=labels,
        ipv4=str(v4.ip) if v4 else None,
        ipv6=str(v6.ip) if v6 else None,
        network_v4=str(v4.network) if v4 else None,
        network_v6=str(v6.network) if v6 else None,
        as_number=bgp.asNumber,
        rr_cluster_id=bgp.routeReflectorClusterID or None,
    )


def node_table(nodes: Iterable[Node]) -> dict[str, NodeBgp]:
    return {n.name: node_bgp(n) for n in sorted(nodes, key=lambda n: n.name)}


def settings(configs: Mapping[str, BGPConfiguration]) -> Settings:
    """Settings from BGPConfiguration `default` (absent: Calico's defaults)."""
    default = configs.get("default")
    spec = default.spec if default is not None else None
    ports = {
        name.removeprefix(NODE_CONFIG_PREFIX): cfg.spec.listenPort
        for name, cfg in configs.items()
        if name.startswith(NODE_CONFIG_PREFIX) and cfg.spec.listenPort
    }
    if spec is None:
        return Settings(node_listen_ports=ports)
    restart = spec.nodeMeshMaxRestartTime
    return Settings(
        as_number=spec.asNumber if spec.asNumber is not None else DEFAULT_AS,
        mesh_enabled=spec.nodeToNodeMeshEnabled is not False,
        listen_port=spec.listenPort or None,
        node_listen_ports=ports,
        mesh_restart_time=round(duration_seconds(restart)) if restart else None,
        mesh_password=password_ref(spec.nodeMeshPassword),
        strict_bind=spec.bindMode == "NodeIP",
        ignored_interfaces=tuple(spec.ignoredInterfaces or ()),
    )


def log_level(configs: Mapping[str, BGPConfiguration], node: str) -> str:
    """BIRD's granularity as confd maps logSeverityScreen: "debug", "info" or "none"."""
    for name in (f"{NODE_CONFIG_PREFIX}{node}", "default"):
        cfg = configs.get(name)
        if cfg is not None and cfg.spec.logSeverityScreen:
            level = cfg.spec.logSeverityScreen.lower()
            return level if level in ("debug", "info") else "none"
    return "info"


def hash_router_id(node_name: str) -> str:
    """Calico's `hashToIPv4`: the first 4 bytes of sha256(name), first octet kept below 224."""
    digest = hashlib.sha256(node_name.encode()).digest()[:4]
    first = digest[0] - 32 if digest[0] > 223 else digest[0]
    return ".".join(str(b) for b in (first, *digest[1:]))


def protocol_id(ip: str) -> str:
    """The IP as it appears in BIRD protocol names: `.` and `:` become `_`."""
    return ip.replace(".", "_").replace(":", "_")
