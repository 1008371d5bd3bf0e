"""Rendering configuration: the subset of Felix config that shapes iptables rules.

Role: one frozen value handed to every `calico.rules` function, so rendering is a pure
function of (config, message). Defaults are Go Felix's (felix/config/config_params.go and
felix/rules/rule_defs.go). Mark bits are validated here once: each Calico mark is one bit,
all distinct, all inside the mask Felix owns; `from_mark_mask` allocates them lowest bit
first the way Felix does.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

InsertMode = Literal["insert", "append"]
_ALLOW_ACTIONS = ("ACCEPT", "RETURN")
_DENY_ACTIONS = ("DROP", "REJECT")
_TO_HOST_ACTIONS = ("DROP", "REJECT", "ACCEPT", "RETURN")


@dataclass(frozen=True, slots=True)
class ProtoPort:
    """A failsafe entry: protocol, port and an optional CIDR restricting the peer."""

    protocol: str
    port: int
    net: str | None = None

    def ip_version(self) -> int | None:
        return None if self.net is None else ipaddress.ip_network(self.net, strict=False).version


DEFAULT_FAILSAFE_INBOUND: tuple[ProtoPort, ...] = (
    ProtoPort("tcp", 22),
    ProtoPort("udp", 68),
    *(ProtoPort("tcp", p) for p in (179, 2379, 2380, 5473, 6443, 6666, 6667)),
)
DEFAULT_FAILSAFE_OUTBOUND: tuple[ProtoPort, ...] = (
    ProtoPort("udp", 53),
    ProtoPort("udp", 67),
    *(ProtoPort("tcp", p) for p in (179, 2379, 2380, 5473, 6443, 6666, 6667)),
)


@dataclass(frozen=True)  # no slots: the hash is kept beside the fields (see __hash__)
class RulesConfig:
    workload_iface_prefixes: tuple[str, ...] = ("cali",)
    mark_accept: int = 0x10000
    mark_pass: int = 0x20000
    mark_scratch0: int = 0x40000
    mark_scratch1: int = 0x80000
    mark_mask: int = 0xFFFF0000
    filter_allow_action: str = "ACCEPT"
    mangle_allow_action: str = "ACCEPT"
    filter_deny_action: str = "DROP"
    endpoint_to_host_action: str = "DROP"
    failsafe_inbound: tuple[ProtoPort, ...] = DEFAULT_FAILSAFE_INBOUND
    failsafe_outbound: tuple[ProtoPort, ...] = DEFAULT_FAILSAFE_OUTBOUND
    log_prefix: str = "calico-packet"
    openstack_special_cases: bool = False
    metadata_addr: str | None = "127.0.0.1"
    metadata_port: int = 8775
    ipv6_enabled: bool = True
    chain_insert_mode: InsertMode = "insert"
    allow_vxlan_from_workloads: bool = False
    allow_ipip_from_workloads: bool = False
    vxlan_port: int = 4789
    disable_conntrack_invalid: bool = False
    # nat table. Felix adds --random-fully to MASQUERADE/SNAT when iptables >= 1.6.2 and
    # the kernel >= 3.14 (felix/environment/feature_detect.go): every system we support.
    nat_random_fully: bool = True
    nat_outgoing_address: str | None = None  # NATOutgoingAddress: SNAT to it, not MASQUERADE
    nat_port_range: tuple[int, int] | None = None  # NATPortRange for TCP/UDP
    nat_outgoing_iface: str | None = None  # IptablesNATOutgoingInterfaceFilter
    floating_ips: bool = False  # FloatingIPs Enabled (OpenStack endpoints' NATs always apply)

    def __post_init__(self) -> None:
        self._check_marks()
        fields = tuple(getattr(self, f.name) for f in dataclasses.fields(self))
        object.__setattr__(self, "_hash", hash(fields))
        for value, allowed in (
            (self.filter_allow_action, _ALLOW_ACTIONS),
            (self.mangle_allow_action, _ALLOW_ACTIONS),
            (self.filter_deny_action, _DENY_ACTIONS),
            (self.endpoint_to_host_action, _TO_HOST_ACTIONS),
        ):
            if value not in allowed:
                raise ValueError(f"action {value!r} is not one of {allowed}")
        if not self.workload_iface_prefixes:
            raise ValueError("at least one workload interface prefix is required")
        if self.nat_outgoing_address is not None:
            ipaddress.IPv4Address(self.nat_outgoing_address)  # ValueError if not IPv4
        if self.nat_port_range is not None and not (
            0 < self.nat_port_range[0] <= self.nat_port_range[1] <= 65535
        ):
            raise ValueError(f"NAT port range {self.nat_port_range} is not lo <= hi in 1-65535")

    def _check_marks(self) -> None:
        used = 0
        for bit in self.calico_marks:
            if bit == 0 or bit & (bit - 1) or bit & ~self.mark_mask or bit & used:
                raise ValueError(f"mark {bit:#x}: need distinct single bits inside the mask")
            used |= bit

    @classmethod
    def from_mark_mask(cls, mark_mask: int, **kwargs: Any) -> RulesConfig:
        """Allocate accept, pass, scratch0, scratch1 from the mask, lowest bit first."""
        bits = [1 << i for i in range(32) if mark_mask & (1 << i)]
        if len(bits) < 4:
            raise ValueError(f"mark mask {mark_mask:#x} has fewer than 4 bits")
        accept, pass_, scratch0, scratch1 = bits[:4]
        return cls(
            mark_accept=accept,
            mark_pass=pass_,
            mark_scratch0=scratch0,
            mark_scratch1=scratch1,
            mark_mask=mark_mask,
            **kwargs,
        )

    def __hash__(self) -> int:
        # Computed once: the rendering caches are keyed on these settings (rules.policy,
        # rules.endpoints), several lookups per endpoint update, and hashing every field
        # cost 2 us a lookup.
        return self._hash  # type: ignore[attr-defined,no-any-return]

    def to_json(self) -> dict[str, Any]:
        """Every setting, as JSON values (what Felix reports for the policy trace)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: object) -> RulesConfig:
        """The settings `to_json` gave; ValueError naming the setting that is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError("rules settings: not a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"rules settings: unknown setting {unknown[0]!r}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            try:
                values[name] = _from_json_value(name, value)
            except KeyError as exc:
                raise ValueError(f"rules settings: {name}: an entry has no {exc}") from None
            except (TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"rules settings: {name}: {exc}") from None
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"rules settings: {exc}") from None

    @property
    def calico_marks(self) -> tuple[int, int, int, int]:
        return (self.mark_accept, self.mark_pass, self.mark_scratch0, self.mark_scratch1)

    @property
    def all_marks(self) -> int:
        return self.mark_accept | self.mark_pass | self.mark_scratch0 | self.mark_scratch1

    @property
    def ip_versions(self) -> tuple[int, ...]:
        return (4, 6) if self.ipv6_enabled else (4,)

    @property
    def openstack_enabled(self) -> bool:
        """Felix turns the OpenStack special cases on for a "tap" interface prefix too."""
        return self.openstack_special_cases or any(
            p.startswith("tap") for p in self.workload_iface_prefixes
        )


def _from_json_value(name: str, value: Any) -> Any:
    """One setting back from JSON: lists to the tuples the dataclass holds, failsafe entries
    to ProtoPorts, and the plain types checked (a wrong type must not render a rule)."""
    if name.startswith("failsafe_"):
        return tuple(ProtoPort(str(e["protocol"]), int(e["port"]), e.get("net")) for e in value)
    if name in ("workload_iface_prefixes", "nat_port_range"):
        return None if value is None else tuple(value)
    default = next(f.default for f in dataclasses.fields(RulesConfig) if f.name == name)
    if default is not None and value is not None and type(value) is not type(default):
        raise TypeError(f"{value!r} is not a {type(default).__name__}")
    return value
