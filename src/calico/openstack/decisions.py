"""What the ML2 driver does about a Neutron event, decided without Neutron (pure).

Ports come in as the dicts Neutron's plugin returns; Neutron's API strings (port statuses,
binding fields, vnic and vif types) are spelled out here, and tests/openstack checks them
against neutron_lib's constants, so this module imports no Neutron and its tests run
without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from calico.openstack import keys
from calico.openstack.settings import (
    SECTION,
    CalicoOptions,
    options_from_values,
    section_options,
)
from calico.openstack.translate import is_endpoint_port

AGENT_TYPE_FELIX = "Calico per-host agent (felix)"
AGENT_BINARY_FELIX = "calico-felix"
NETWORK_TYPES = ("local", "flat")

# Neutron's API strings (neutron_lib.api.definitions.portbindings, neutron_lib.constants).
HOST_ID = "binding:host_id"
VIF_TYPE = "binding:vif_type"
VIF_TYPE_UNBOUND = "unbound"
VIF_UNPLUGGED_TYPES = ("binding_failed", "unbound")
VNIC_NORMAL = "normal"
PORT_STATUS_ACTIVE = "ACTIVE"
PORT_STATUS_DOWN = "DOWN"
PORT_STATUS_ERROR = "ERROR"
L2_AGENT_TOPIC = "N/A"

PortDict = Mapping[str, Any]

# Fields Neutron bumps on every write; a change in only these (and status) is not ours to act on.
_VOLATILE_PORT_FIELDS = frozenset({"status", "revision_number", "updated_at"})

# Felix's endpoint status -> Neutron port status; anything else (or a vanished status) is ERROR.
_PORT_STATUS: dict[str, str] = {
    "up": PORT_STATUS_ACTIVE,
    "down": PORT_STATUS_DOWN,
    "error": PORT_STATUS_ERROR,
}


def options_from_conf(conf: Any) -> CalicoOptions:
    """The `[calico]` group of an oslo ConfigOpts as CalicoOptions (ValueError if invalid)."""
    group = getattr(conf, SECTION)
    return options_from_values({o.name: getattr(group, o.name) for o in section_options(SECTION)})


def bound_host(port: PortDict) -> str | None:
    """The host a port is bound to, or None while unbound or after a failed binding."""
    host = port.get(HOST_ID) or None
    vif_type = port.get(VIF_TYPE, VIF_TYPE_UNBOUND)
    if host is None or vif_type in VIF_UNPLUGGED_TYPES:
        return None
    return str(host)


def endpoint_name_for(port: PortDict) -> str | None:
    """The WorkloadEndpoint name a port has in etcd, or None if it has none."""
    host = bound_host(port)
    if host is None or not is_endpoint_port(port):
        return None
    return keys.endpoint_name(host, str(port.get("device_id") or ""), str(port["id"]))


def is_status_only_change(original: PortDict, current: PortDict) -> bool:
    """True when a port update changed nothing but status (e.g. our own status feedback)."""
    fields = (set(original) | set(current)) - _VOLATILE_PORT_FIELDS
    return all(original.get(f) == current.get(f) for f in fields)


@dataclass(frozen=True, slots=True)
class EndpointPlan:
    """What a port update means in etcd: delete an endpoint (by name), then (re)write one."""

    delete: str | None = None
    write: bool = False


def plan_port_update(original: PortDict | None, current: PortDict) -> EndpointPlan:
    """Bound now -> rewrite (new binding, SG/IP/admin-state change); bound before under
    another name (host move, new device) or not bound now -> delete the old endpoint."""
    if original is not None and is_status_only_change(original, current):
        return EndpointPlan()
    old = endpoint_name_for(original) if original is not None else None
    new = endpoint_name_for(current)
    return EndpointPlan(delete=old if old is not None and old != new else None, write=bool(new))


def neutron_port_status(calico_status: str | None) -> str:
    return _PORT_STATUS.get(calico_status or "", PORT_STATUS_ERROR)


def port_status_for_report(
    port: PortDict | None, reporting_host: str, calico_status: str | None
) -> str | None:
    """The Neutron status to set after Felix on reporting_host reported calico_status, or
    None to ignore the report: the port is gone, is not ours, or is bound elsewhere (the
    old host of a migration removing its status must not mark the moved port ERROR)."""
    if port is None or not is_endpoint_port(port) or bound_host(port) != reporting_host:
        return None
    wanted = neutron_port_status(calico_status)
    return None if port.get("status") == wanted else wanted


def felix_agent_state(host: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """A Felix heartbeat as Neutron agent state (report_state's argument)."""
    state: dict[str, Any] = {
        "agent_type": AGENT_TYPE_FELIX,
        "binary": AGENT_BINARY_FELIX,
        "host": host,
        "topic": L2_AGENT_TOPIC,
        "configurations": {},
    }
    if status.get("first_update") is True:
        # Felix just started: Neutron resets the agent's started_at.
        state["start_flag"] = True
    return state


def binding_refusal(
    host: str | None,
    vnic_type: str,
    agents_alive: Sequence[bool],
    network_types: Sequence[str],
    qos_policy_id: str | None = None,
) -> str | None:
    """Why Calico will not bind a port, or None when it can. qos_policy_id: the port's (or
    its network's) QoS policy if it has rules."""
    if vnic_type != VNIC_NORMAL:
        return f"vnic_type {vnic_type!r} is not supported (only {VNIC_NORMAL!r})"
    if not host:
        return "the port has no binding host"
    if not agents_alive:
        return f"no Felix has reported from host {host!r}"
    if not any(agents_alive):
        return f"Felix on host {host!r} is not alive (its heartbeat expired)"
    if not any(t in NETWORK_TYPES for t in network_types):
        types = ", ".join(sorted(set(network_types))) or "none"
        return f"network type {types} is not supported (Calico binds {'/'.join(NETWORK_TYPES)})"
    if qos_policy_id:
        return (
            f"its QoS policy {qos_policy_id} is not supported by calico-py"
            " (Felix does not enforce QoS controls)"
        )
    return None


def floating_ip_port_ids(states: Iterable[Mapping[str, Any] | None]) -> set[str]:
    """Ports whose NATs a floating IP event touches (before and after)."""
    return {str(s["port_id"]) for s in states if s and s.get("port_id")}
