"""Every kernel name Calico owns: iptables chains and IP sets, in one place.

Names are Go Felix's (felix/rules/rule_defs.go) so a host looks the same to operators and a
restarted Felix recognises its own objects by prefix: chains start with "cali-", IP sets with
"cali40"/"cali60" (temporary copies "cali4t"/"cali6t").

Length limits: iptables chain names are at most 28 characters; an ID that does not fit is
replaced by "_" + a truncated base64url SHA-256 of it (felix/hashutils/id.go), which is also
done for IDs with characters iptables-restore cannot take, so one odd name cannot break a
whole table transaction. IP set names are at most 31 characters and, like Felix's
`NameForMainIPSet`, simply truncate the ID: IDs are hashes already ("s:<sha224>").
"""

from __future__ import annotations

import base64
import hashlib
import re

from calico.calc.messages import PolicyID

MAX_CHAIN_NAME = 28
MAX_IPSET_NAME = 31
CHAIN_PREFIX = "cali-"

CHAIN_INPUT = "cali-INPUT"
CHAIN_FORWARD = "cali-FORWARD"
CHAIN_OUTPUT = "cali-OUTPUT"
CHAIN_PREROUTING = "cali-PREROUTING"
CHAIN_POSTROUTING = "cali-POSTROUTING"
CHAIN_FAILSAFE_IN = "cali-failsafe-in"
CHAIN_FAILSAFE_OUT = "cali-failsafe-out"
CHAIN_WL_TO_HOST = "cali-wl-to-host"
CHAIN_FROM_WL_DISPATCH = "cali-from-wl-dispatch"
CHAIN_TO_WL_DISPATCH = "cali-to-wl-dispatch"
CHAIN_FROM_HOST_ENDPOINT = "cali-from-host-endpoint"
CHAIN_TO_HOST_ENDPOINT = "cali-to-host-endpoint"
CHAIN_FROM_HEP_FORWARD = "cali-from-hep-forward"
CHAIN_TO_HEP_FORWARD = "cali-to-hep-forward"
CHAIN_RPF_SKIP = "cali-rpf-skip"
CHAIN_FIP_DNAT = "cali-fip-dnat"
CHAIN_FIP_SNAT = "cali-fip-snat"
CHAIN_NAT_OUTGOING = "cali-nat-outgoing"

POLICY_INBOUND_PFX = "cali-pi-"
POLICY_OUTBOUND_PFX = "cali-po-"
POLICY_GROUP_INBOUND_PFX = "cali-gi-"
POLICY_GROUP_OUTBOUND_PFX = "cali-go-"
PROFILE_INBOUND_PFX = "cali-pri-"
PROFILE_OUTBOUND_PFX = "cali-pro-"
WORKLOAD_TO_PFX = "cali-tw-"
WORKLOAD_FROM_PFX = "cali-fw-"
HOST_TO_PFX = "cali-th-"
HOST_FROM_PFX = "cali-fh-"
HOST_TO_FORWARD_PFX = "cali-thfw-"
HOST_FROM_FORWARD_PFX = "cali-fhfw-"

ALL_INTERFACES = "any-interface-at-all"
"""Chain-name suffix for the wildcard host endpoint (interface "*"), as in Felix."""

IPSET_ID_ALL_POOLS = "all-ipam-pools"
"""Every IP pool's CIDR (Felix's `IPSetIDAllPools`): kernel name "cali40all-ipam-pools"."""
IPSET_ID_MASQ_POOLS = "masq-ipam-pools"
"""The CIDRs of pools with natOutgoing (`IPSetIDNATOutgoingMasqPools`)."""
IPSET_ID_ALL_VXLAN_NET = "all-vxlan-net"
"""Every VTEP's parent (host) address (`IPSetIDAllVXLANSourceNets`): who may send us VXLAN."""

RULE_HASH_PREFIX = "cali:"
IPSET_PREFIX = "cali"
_SHORTENED = "_"
_SAFE_CHAIN_CHARS = re.compile(r"^[A-Za-z0-9_.:/@+=-]+$")


def length_limited(prefix: str, suffix: str, max_len: int = MAX_CHAIN_NAME) -> str:
    """prefix + suffix, or prefix + "_" + hash(suffix) when too long or not iptables-safe."""
    total = len(prefix) + len(suffix)
    unsafe = not _SAFE_CHAIN_CHARS.match(suffix)
    if unsafe or total > max_len or (total == max_len and suffix.startswith(_SHORTENED)):
        digest = hashlib.sha256(suffix.encode()).digest()
        encoded = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        return prefix + _SHORTENED + encoded[: max_len - 1 - len(prefix)]
    return prefix + suffix


def policy_id_str(policy_id: PolicyID) -> str:
    """The policy's identity inside its chain name: tier/name or tier/namespace/name."""
    parts = (policy_id.tier, policy_id.namespace, policy_id.name)
    return "/".join(p for p in parts if p is not None)


def policy_chain_name(policy_id: PolicyID, *, inbound: bool) -> str:
    prefix = POLICY_INBOUND_PFX if inbound else POLICY_OUTBOUND_PFX
    return length_limited(prefix, policy_id_str(policy_id))


def policy_group_chain_name(tier: str, selection: str, *, inbound: bool) -> str:
    """The chain shared by a tier's policies with one selection (a selector's unique ID):
    named by what they select, not by which they are, so that adding or removing one of
    them rewrites only this chain, not the chains of the endpoints that jump to it."""
    prefix = POLICY_GROUP_INBOUND_PFX if inbound else POLICY_GROUP_OUTBOUND_PFX
    return length_limited(prefix, f"{tier}/{selection}")


def profile_chain_name(profile_id: str, *, inbound: bool) -> str:
    prefix = PROFILE_INBOUND_PFX if inbound else PROFILE_OUTBOUND_PFX
    return length_limited(prefix, profile_id)


def endpoint_chain_name(prefix: str, iface: str) -> str:
    """Per-endpoint chain, e.g. ("cali-tw-", "cali1234") -> "cali-tw-cali1234"."""
    return length_limited(prefix, ALL_INTERFACES if iface == "*" else iface)


def ipset_name(ip_version: int, set_id: str) -> str:
    """Kernel name of the main IP set for a family-agnostic ID: "cali40" + ID, truncated."""
    return f"{IPSET_PREFIX}{ip_version}0{set_id}"[:MAX_IPSET_NAME]


def temp_ipset_name(ip_version: int, set_id: str) -> str:
    """Scratch copy used for a full rewrite before `ipset swap`."""
    return f"{IPSET_PREFIX}{ip_version}t{set_id}"[:MAX_IPSET_NAME]


def owns_ipset(ip_version: int, name: str) -> bool:
    return name.startswith((f"{IPSET_PREFIX}{ip_version}0", f"{IPSET_PREFIX}{ip_version}t"))


def is_temp_ipset(ip_version: int, name: str) -> bool:
    return name.startswith(f"{IPSET_PREFIX}{ip_version}t")
