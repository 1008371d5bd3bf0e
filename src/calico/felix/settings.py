"""Felix's settings that others need too: the FelixConfiguration layers from the datastore,
and the rule-rendering configuration a `FelixConfig` gives (the policy trace renders with
the same one Felix does)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from calico.datastore.client import ResourceClient, ResourceNotFound
from calico.felix.config import FelixConfig
from calico.model import ResourceError
from calico.model.felixconfig import FelixConfiguration
from calico.rules.config import ProtoPort, RulesConfig

log = logging.getLogger("calico.felix")


def datastore_specs(client: ResourceClient, hostname: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `default` and `node.<hostname>` FelixConfiguration specs ({} if absent). One that
    does not validate counts as absent, as the syncer treats it: a bad edit must not stop
    Felix from starting on every host."""
    specs = []
    for name in ("default", f"node.{hostname}"):
        try:
            resource = client.get(FelixConfiguration, name)
            specs.append(resource.spec_values())
        except ResourceNotFound:
            specs.append({})
        except ResourceError as exc:
            log.error("ignoring invalid FelixConfiguration %s: %s", name, exc)
            specs.append({})
    return specs[0], specs[1]


def rules_config(cfg: FelixConfig) -> RulesConfig:
    def ports(entries: Sequence[Any]) -> tuple[ProtoPort, ...]:
        return tuple(ProtoPort(p.protocol, p.port, p.net) for p in entries)

    return RulesConfig.from_mark_mask(
        cfg.iptables_mark_mask,
        workload_iface_prefixes=cfg.interface_prefixes,
        filter_allow_action=cfg.filter_allow_action.upper(),
        mangle_allow_action=cfg.mangle_allow_action.upper(),
        filter_deny_action=cfg.filter_deny_action.upper(),
        endpoint_to_host_action=cfg.default_endpoint_to_host_action.upper(),
        failsafe_inbound=ports(cfg.failsafe_inbound),
        failsafe_outbound=ports(cfg.failsafe_outbound),
        log_prefix=cfg.log_prefix,
        # "none" turns the metadata special cases off (Felix's MetadataAddr).
        metadata_addr=None if cfg.metadata_addr.lower() in ("", "none") else cfg.metadata_addr,
        metadata_port=cfg.metadata_port,
        ipv6_enabled=cfg.ipv6_support,
        chain_insert_mode="append" if cfg.chain_insert_mode == "Append" else "insert",
        floating_ips=cfg.floating_ips == "Enabled",
        nat_outgoing_address=cfg.nat_outgoing_address or None,
        nat_port_range=cfg.nat_port_range,
        nat_outgoing_iface=cfg.nat_outgoing_iface or None,
        disable_conntrack_invalid=cfg.disable_conntrack_invalid,
        allow_vxlan_from_workloads=cfg.allow_vxlan_from_workloads,
        allow_ipip_from_workloads=cfg.allow_ipip_from_workloads,
        vxlan_port=cfg.vxlan_port,
    )
