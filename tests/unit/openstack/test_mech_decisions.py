"""The ML2 driver's decisions, as pure functions (no Neutron, no etcd)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from calico.openstack import keys
from calico.openstack.decisions import (
    AGENT_TYPE_FELIX,
    EndpointPlan,
    binding_refusal,
    bound_host,
    endpoint_name_for,
    felix_agent_state,
    floating_ip_port_ids,
    is_status_only_change,
    neutron_port_status,
    options_from_conf,
    plan_port_update,
    port_status_for_report,
)
from calico.openstack.settings import OPTIONS, CalicoOptions


def port(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "p1",
        "device_id": "vm1",
        "device_owner": "compute:nova",
        "binding:host_id": "h1",
        "binding:vif_type": "tap",
        "status": "DOWN",
        "revision_number": 3,
        "updated_at": "2026-01-01T00:00:00Z",
        "security_groups": ["sg1"],
        "admin_state_up": True,
    }
    return base | changes


NAME_H1 = keys.endpoint_name("h1", "vm1", "p1")
NAME_H2 = keys.endpoint_name("h2", "vm1", "p1")


@pytest.mark.parametrize(
    ("fields", "bound"),
    [
        ({}, "h1"),
        ({"binding:vif_type": "unbound"}, None),
        ({"binding:vif_type": "binding_failed"}, None),
        ({"binding:host_id": ""}, None),
        ({"binding:host_id": None, "binding:vif_type": "tap"}, None),
    ],
)
def test_bound_host(fields: dict[str, Any], bound: str | None) -> None:
    assert bound_host(port(**fields)) == bound


def test_endpoint_names_only_for_bound_vm_ports() -> None:
    assert endpoint_name_for(port()) == NAME_H1
    assert endpoint_name_for(port(device_owner="network:dhcp")) is None
    assert endpoint_name_for(port(device_owner="")) is None
    assert endpoint_name_for(port(**{"binding:vif_type": "unbound"})) is None


def test_status_only_changes() -> None:
    assert is_status_only_change(port(), port(status="ACTIVE", revision_number=4, updated_at="x"))
    assert not is_status_only_change(port(), port(status="ACTIVE", admin_state_up=False))
    assert not is_status_only_change(port(), port(security_groups=["sg2"]))
    assert not is_status_only_change(port(), port(name="new"))  # a field appearing counts


@pytest.mark.parametrize(
    ("original", "current", "plan"),
    [
        # create: bound at once, or (usually) bound later by an update
        (None, port(), EndpointPlan(write=True)),
        (None, port(**{"binding:vif_type": "unbound"}), EndpointPlan()),
        (port(**{"binding:vif_type": "unbound"}), port(), EndpointPlan(write=True)),
        # ordinary changes rewrite in place; status feedback does nothing
        (port(), port(security_groups=["sg2"], revision_number=4), EndpointPlan(write=True)),
        (port(), port(admin_state_up=False), EndpointPlan(write=True)),
        (port(), port(status="ACTIVE", revision_number=4), EndpointPlan()),
        # moves and renames delete the old endpoint
        (port(), port(**{"binding:host_id": "h2"}), EndpointPlan(delete=NAME_H1, write=True)),
        (
            port(),
            port(device_id="vm2"),
            EndpointPlan(delete=NAME_H1, write=True),
        ),
        # unbinding, failed rebinding, no longer a VM port
        (
            port(),
            port(**{"binding:host_id": "", "binding:vif_type": "unbound"}),
            EndpointPlan(delete=NAME_H1),
        ),
        (
            port(),
            port(**{"binding:host_id": "h2", "binding:vif_type": "binding_failed"}),
            EndpointPlan(delete=NAME_H1),
        ),
        (port(), port(device_owner="network:router_interface"), EndpointPlan(delete=NAME_H1)),
        # never ours
        (
            port(device_owner="network:dhcp"),
            port(device_owner="network:dhcp", name="x"),
            EndpointPlan(),
        ),
        (
            port(**{"binding:vif_type": "unbound"}),
            port(**{"binding:vif_type": "binding_failed", "binding:host_id": "h2"}),
            EndpointPlan(),
        ),
    ],
)
def test_plan_port_update(
    original: dict[str, Any] | None, current: dict[str, Any], plan: EndpointPlan
) -> None:
    assert plan_port_update(original, current) == plan
    assert NAME_H2 != NAME_H1


@pytest.mark.parametrize(
    ("calico", "neutron"),
    [("up", "ACTIVE"), ("down", "DOWN"), ("error", "ERROR"), (None, "ERROR"), ("weird", "ERROR")],
)
def test_neutron_port_status(calico: str | None, neutron: str) -> None:
    assert neutron_port_status(calico) == neutron


def test_port_status_for_report() -> None:
    assert port_status_for_report(port(), "h1", "up") == "ACTIVE"
    assert port_status_for_report(port(), "h1", None) == "ERROR"
    assert port_status_for_report(port(status="ACTIVE"), "h1", "up") is None  # no change
    assert port_status_for_report(port(), "h2", "up") is None  # bound elsewhere (migration)
    assert port_status_for_report(None, "h1", "up") is None  # deleted meanwhile
    assert port_status_for_report(port(device_owner="network:dhcp"), "h1", "up") is None
    assert port_status_for_report(port(**{"binding:vif_type": "unbound"}), "h1", None) is None


def test_felix_agent_state() -> None:
    state = felix_agent_state("h1", {"time": "t", "uptime": 1, "first_update": True})
    assert state == {
        "agent_type": AGENT_TYPE_FELIX,
        "binary": "calico-felix",
        "host": "h1",
        "topic": "N/A",
        "configurations": {},
        "start_flag": True,
    }
    assert "start_flag" not in felix_agent_state("h1", {"first_update": False})
    assert "start_flag" not in felix_agent_state("h1", {"first_update": "yes"})


@pytest.mark.parametrize(
    ("host", "vnic", "alive", "types", "reason"),
    [
        ("h1", "normal", [True], ["flat"], None),
        ("h1", "normal", [False, True], ["vlan", "local"], None),
        ("h1", "direct", [True], ["flat"], "vnic_type 'direct' is not supported"),
        ("", "normal", [True], ["flat"], "the port has no binding host"),
        ("h1", "normal", [], ["flat"], "no Felix has reported from host 'h1'"),
        ("h1", "normal", [False], ["flat"], "Felix on host 'h1' is not alive"),
        ("h1", "normal", [True], ["vxlan", "vlan"], "network type vlan, vxlan is not supported"),
    ],
)
def test_binding_refusal(
    host: str, vnic: str, alive: list[bool], types: list[str], reason: str | None
) -> None:
    got = binding_refusal(host, vnic, alive, types)
    if reason is None:
        assert binding_refusal(host, vnic, alive, types, "pol-1") == (
            "its QoS policy pol-1 is not supported by calico-py (Felix does not enforce QoS controls)"
        )
    if reason is None:
        assert got is None
    else:
        assert got is not None and got.startswith(reason), got


def test_floating_ip_port_ids() -> None:
    assert floating_ip_port_ids(({"port_id": "a"}, {"port_id": "b"})) == {"a", "b"}
    assert floating_ip_port_ids(({"port_id": "a"}, {"port_id": None})) == {"a"}
    assert floating_ip_port_ids(({"port_id": None}, None)) == set()


def test_options_from_conf_reads_the_calico_group() -> None:
    # (With oslo.config itself: tests/openstack/test_driver_options.py.)
    group = {o.name: o.default for o in OPTIONS} | {"etcd_port": 12379, "etcd_key_file": None}
    assert options_from_conf(SimpleNamespace(calico=SimpleNamespace(**group))) == CalicoOptions(
        etcd_port=12379
    )
    group["openstack_region"] = "Bad_Region"
    with pytest.raises(ValueError, match="openstack_region"):
        options_from_conf(SimpleNamespace(calico=SimpleNamespace(**group)))
