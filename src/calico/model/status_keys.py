"""Felix's status keys in etcd, built and parsed in one place, and their region segment (pure).

Keys, as Calico's Felix (v2, with region) writes them:
  /calico/felix/v2/<region>/host/<host>/status    {"time", "uptime", "first_update"}, lease TTL
  /calico/felix/v2/<region>/host/<host>/last_reported_status    the same value, no TTL
  /calico/felix/v2/<region>/host/<host>/workload/<orch>/<workload>/endpoint/<ep>  {"status": ...}
  /calico/felix/v2/<region>/host/<host>/endpoint/<hep>                             {"status": ...}
and calico-py's own, for the policy trace:
  /calico/felix/v2/<region>/host/<host>/rules_settings   the settings its rules are rendered with
  /calico/felix/v2/<region>/host/<host>/host_endpoint_interfaces   {host endpoint: interface}
The workload ID is Calico's "<namespace>/<workload>"; "/" inside a path segment is written
"%2f" (libcalico-go's escapeName), e.g. `workload/k8s/default%2fnginx/endpoint/eth0`.

The region segment is `no-region`, or `region-<openstack_region>` as networking-calico writes
it; the OpenStack keys under /calico/openstack/v2 and /calico/dhcp/v2 carry it too, and the
region also names the namespace `openstack-region-<region>` of OpenStack's endpoints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FELIX_STATUS_ROOT = "/calico/felix/v2"
NO_REGION = "no-region"
REGION_PREFIX = "region-"
REGION_NAMESPACE_PREFIX = "openstack-region-"

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
    """The region segment of keys: `no-region`, or `region-<region>` ('' and None: no region)."""
    if not region:
        return NO_REGION
    validate_region(region)
    return REGION_PREFIX + region


def status_prefix(region_str: str = NO_REGION) -> str:
    """Prefix of every host's Felix status keys in this region."""
    return f"{FELIX_STATUS_ROOT}/{region_str}/host/"


def host_prefix(hostname: str, region_str: str = NO_REGION) -> str:
    return f"{status_prefix(region_str)}{hostname}/"


def rules_settings_key(hostname: str, region_str: str = NO_REGION) -> str:
    """Where a host's Felix reports the settings it renders rules with (calico-py's own key,
    next to the heartbeat; `calicoctl policy trace` reads it)."""
    return f"{host_prefix(hostname, region_str)}rules_settings"


def host_endpoint_interfaces_key(hostname: str, region_str: str = NO_REGION) -> str:
    """Where a host's Felix reports, as {host endpoint name: interface}, the interface each
    of its host endpoints resolved to (calico-py's own key)."""
    return f"{host_prefix(hostname, region_str)}host_endpoint_interfaces"


def escape_segment(name: str) -> str:
    """A name as one key path segment ("/" -> "%2f"), as libcalico-go's escapeName."""
    return name.replace("/", "%2f")


def unescape_segment(segment: str) -> str:
    return segment.replace("%2f", "/").replace("%2F", "/")


def workload_status_key(
    hostname: str, orchestrator: str, workload: str, endpoint: str, region_str: str = NO_REGION
) -> str:
    """`workload` is Calico's workload ID, "<namespace>/<workload>" for v3 endpoints."""
    base = host_prefix(hostname, region_str)
    orch, wl, ep = (escape_segment(n) for n in (orchestrator, workload, endpoint))
    return f"{base}workload/{orch}/{wl}/endpoint/{ep}"


def host_endpoint_status_key(hostname: str, name: str, region_str: str = NO_REGION) -> str:
    return f"{host_prefix(hostname, region_str)}endpoint/{escape_segment(name)}"


@dataclass(frozen=True, slots=True)
class HeartbeatKey:
    host: str


@dataclass(frozen=True, slots=True)
class WorkloadStatusKey:
    host: str
    orchestrator: str
    workload: str
    endpoint: str


def parse_status_key(region_str: str, key: str) -> HeartbeatKey | WorkloadStatusKey | None:
    """A host's heartbeat key or a workload endpoint's status key in this region, or None for
    anything else (`last_reported_status`, host endpoints, other regions, malformed keys)."""
    prefix = status_prefix(region_str)
    if not key.startswith(prefix):
        return None
    parts = key[len(prefix) :].split("/")
    if len(parts) == 2 and parts[1] == "status" and parts[0]:
        return HeartbeatKey(parts[0])
    if len(parts) == 6 and parts[1] == "workload" and parts[4] == "endpoint":
        host, _, orch, workload, _, endpoint = parts
        if host and endpoint:
            return WorkloadStatusKey(
                host, unescape_segment(orch), unescape_segment(workload), unescape_segment(endpoint)
            )
    return None
