"""Names and etcd keys shared by the Neutron driver, the DHCP agent and Felix (pure).

As networking-calico: OpenStack-only keys carry a region string, `no-region` or
`region-<openstack_region>`:
  /calico/felix/v2/<region>/host/<host>/...            Felix heartbeat and endpoint status
  /calico/openstack/v2/<region>/neutron_election       leader among neutron-servers
  /calico/dhcp/v2/<region>/subnet/<subnet_id>          subnet data for the DHCP agent
v3 resources live in the namespace `openstack`, or `openstack-region-<name>` with a region.
A port's WorkloadEndpoint is named `<host>-openstack-<device_id>-<port_id>` ('-' doubled
inside each part), its host interface is `tap` + the port ID's first 11 characters, and a
security group becomes the NetworkPolicy `ossg.default.<sg_id>` selecting the label
`sg.projectcalico.org/openstack-<sg_id>`.
"""

from __future__ import annotations

import re

from calico.model.endpoints import workload_endpoint_name

ORCHESTRATOR = "openstack"
NO_REGION = "no-region"
REGION_PREFIX = "region-"
NAMESPACE = "openstack"
REGION_NAMESPACE_PREFIX = "openstack-region-"
INTERFACE_PREFIX = "tap"
SG_POLICY_PREFIX = "ossg.default."
SG_LABEL_PREFIX = "sg.projectcalico.org/openstack-"
SG_NAME_LABEL_PREFIX = "sg-name.projectcalico.org/openstack-"

# A region ends up inside a namespace name (a DNS label of at most 63 characters).
MAX_REGION_LEN = 63 - len(REGION_NAMESPACE_PREFIX)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_region(region: str) -> None:
    """Raise ValueError naming `openstack_region` when the region cannot name keys/namespaces."""
    if len(region) > MAX_REGION_LEN:
        raise ValueError(
            f"[calico] openstack_region {region!r}: must be {MAX_REGION_LEN} characters or fewer"
        )
    if not _DNS_LABEL.match(region):
        raise ValueError(
            f"[calico] openstack_region {region!r}: must be a DNS label (lower case"
            " alphanumerics or '-', starting and ending with an alphanumeric)"
        )


def region_string(region: str | None) -> str:
    if not region:
        return NO_REGION
    validate_region(region)
    return REGION_PREFIX + region


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


def felix_status_prefix(region_str: str) -> str:
    """Prefix of every host's Felix status keys in this region."""
    return f"/calico/felix/v2/{region_str}/host/"


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
