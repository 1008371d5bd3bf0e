"""Names and etcd keys shared by the Neutron driver and the DHCP agent (pure).

As networking-calico: OpenStack-only keys carry a region string, `no-region` or
`region-<openstack_region>` (calico.model.status_keys, whose Felix status keys carry it too):
  /calico/openstack/v2/<region>/neutron_election       leader among neutron-servers
  /calico/dhcp/v2/<region>/subnet/<subnet_id>          subnet data for the DHCP agent
v3 resources live in the namespace `openstack`, or `openstack-region-<name>` with a region.
A port's WorkloadEndpoint is named `<host>-openstack-<device_id>-<port_id>` ('-' doubled
inside each part), its host interface is `tap` + the port ID's first 11 characters, and a
security group becomes the NetworkPolicy `ossg.default.<sg_id>` selecting the label
`sg.projectcalico.org/openstack-<sg_id>`.
"""

from __future__ import annotations

from calico.model.endpoints import workload_endpoint_name
from calico.model.status_keys import REGION_NAMESPACE_PREFIX, validate_region

ORCHESTRATOR = "openstack"
NAMESPACE = "openstack"
INTERFACE_PREFIX = "tap"
SG_POLICY_PREFIX = "ossg.default."
SG_LABEL_PREFIX = "sg.projectcalico.org/openstack-"
SG_NAME_LABEL_PREFIX = "sg-name.projectcalico.org/openstack-"


def endpoint_namespace(region: str | None) -> str:
    if not region:
        return NAMESPACE
    validate_region(region)
    return REGION_NAMESPACE_PREFIX + region


def endpoint_name(host: str, device_id: str, port_id: str) -> str:
    return workload_endpoint_name(host, ORCHESTRATOR, device_id, port_id)


def interface_name(port_id: str) -> str:
    return INTERFACE_PREFIX + port_id[:11]


def policy_name(sg_id: str) -> str:
    return SG_POLICY_PREFIX + sg_id


def sg_label(sg_id: str) -> str:
    return SG_LABEL_PREFIX + sg_id


def subnet_prefix(region_str: str) -> str:
    return f"/calico/dhcp/v2/{region_str}/subnet/"


def subnet_key(region_str: str, subnet_id: str) -> str:
    return subnet_prefix(region_str) + subnet_id


def openstack_prefix(region_str: str) -> str:
    return f"/calico/openstack/v2/{region_str}/"


def election_key(region_str: str) -> str:
    return openstack_prefix(region_str) + "neutron_election"


def resync_request_key(region_str: str) -> str:
    return openstack_prefix(region_str) + "resync/request"


def resync_result_key(region_str: str, request_id: str) -> str:
    return openstack_prefix(region_str) + f"resync/result/{request_id}"
