"""What calico-py does with every field of every resource: the one classification.

Each field of each model class is one of:

* SUPPORTED: it works (read by calc/rules/dataplane/felix/bgp/ipam/node/cni/openstack and
  tested there);
* NOOP: accepted and stored, but it has no effect here, for a reason a user would accept
  (Kubernetes bookkeeping, display-only fields, a knob of a feature that is off);
* REFUSED: a value that asks for behaviour calico-py does not have is an error where it
  enters (model validation, so calicoctl validate/create/apply/replace, and every reader of
  the datastore, which then treats the resource as invalid data). Values that ask for
  nothing stay accepted so upstream manifests still apply: absent, empty ([], {}, ""), and
  the values in `accepts` (the upstream default and explicit "off" values; strings compare
  case-insensitively, durations by length, a list is accepted when every item is).

How to classify a new field (a test fails until you do):

1. Add the field to its pydantic model class in calico.model.
2. Add an entry under that class's name in `FIELDS` below (fields a class inherits are
   looked up under its bases' names too, e.g. `_PolicySpecBase`). FelixConfiguration's spec
   fields live in `FELIX` (the ones Felix's config layer reads are `FELIX_SUPPORTED`).
   Fields nested inside a refused or no-op field share its status and need no entry.
3. SUPPORTED only if something reads the field and a test covers it; otherwise
   `noop("why that is harmless")` or `refused("what is not implemented", *accepted values,
   alternative="what to use instead")`.
4. Regenerate the table: `python -m calico.model.support > docs/support.md`.

Pure: no I/O; the resource classes are imported only by `walk` (docs and tests).
`Resource` validation calls `first_refusal` once per resource.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from calico.model.errors import show_value
from calico.model.felix_fields import FELIX_FIELDS, REMOVED_FELIX_FIELDS
from calico.model.fields import duration_seconds


class Status(enum.Enum):
    SUPPORTED = "supported"
    NOOP = "accepted as no-op"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Support:
    status: Status
    reason: str = ""  # NOOP: why it is harmless; REFUSED: what calico-py does not implement
    accepts: tuple[Any, ...] = ()  # REFUSED: values (besides empty) that ask for nothing
    alternative: str = ""  # REFUSED: what to use instead, if anything

    def refuses(self, value: Any) -> bool:
        """True if `value` asks for something this field cannot do here."""
        if self.status is not Status.REFUSED or _empty(value):
            return False
        if isinstance(value, list):
            return any(self.refuses(item) for item in value)
        return not any(_same(value, ok) for ok in self.accepts)

    def message(self, value: Any) -> str:
        """The error for a refused value: `"Always" is not supported by calico-py (...)`."""
        shown = show_value(_first_refused(self, value))
        text = f"{shown} is not supported by calico-py ({self.reason})"
        return f"{text}; {self.alternative}" if self.alternative else text

    def describe(self) -> str:
        """One table cell: what is accepted and why."""
        if self.status is not Status.REFUSED:
            return self.reason
        accepted = ", ".join(show_value(v) for v in self.accepts)
        text = self.reason + (f"; accepted: {accepted}" if accepted else "")
        return text + (f"; {self.alternative}" if self.alternative else "")


SUPPORTED = Support(Status.SUPPORTED)


def supported(note: str) -> Support:
    """Supported, with a note on how (shown in docs/support.md)."""
    return Support(Status.SUPPORTED, note)


def noop(reason: str) -> Support:
    return Support(Status.NOOP, reason)


def refused(reason: str, *accepts: Any, alternative: str = "") -> Support:
    return Support(Status.REFUSED, reason, accepts, alternative)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and not value)


def _seconds(text: str) -> float | None:
    try:
        return duration_seconds(text)
    except ValueError:
        return None


def _same(value: Any, accepted: Any) -> bool:
    if isinstance(value, bool) or isinstance(accepted, bool):
        return value is accepted
    if isinstance(value, str) and isinstance(accepted, str):
        if value.lower() == accepted.lower():
            return True
        a, b = _seconds(value), _seconds(accepted)
        return a is not None and a == b
    return bool(value == accepted)


def _first_refused(support: Support, value: Any) -> Any:
    if isinstance(value, list):
        return next((v for v in value if support.refuses(v)), value)
    return value


# --- reasons shared by several fields --------------------------------------------------------

_K8S_META = "Kubernetes object bookkeeping; the etcd datastore keeps its own revision"
_IPIP = "IPIP is not implemented"
_FROM_NODE = "Felix takes its VTEP from its Node resource (allocated by calico node)"
_WIREGUARD = "WireGuard is not implemented"
_BPF = "the eBPF dataplane is not implemented; Felix programs iptables"
_FLOW_LOGS = "flow logs are not implemented"
_NFTABLES = "the nftables dataplane is not implemented"
_NFT_ALT = "use iptablesBackend: NFT for iptables over nf_tables"
_K8S_SERVICES = "there is no Kubernetes service handling (no kube-proxy integration)"
_ISTIO = "Istio integration is not implemented"
_SECRETS = (
    "TCP MD5 password; the secretKeyRef is read on each node from the file"
    " `$CALICO_SECRETS_DIR/<name>/<key>` (no Kubernetes secrets here); a missing or unusable"
    " secret leaves the {} unconfigured"
)
_UPSTREAM_NODE = "written by upstream calico/node; calico-py reads nothing from it"
_TUNNEL_ADDR = "written by upstream calico/node for {} pools, which are refused; only"
_TUNNEL_ADDR += " `calicoctl ipam check` reads it (as an address in use)"
_VXLAN_NODE = (
    "the node's VXLAN {} ({}), kept by `calico node run` while a VXLAN pool selects the node"
    " and cleared when none does (a MAC set by hand is kept meanwhile, else derived from the"
    " node name)"
)

# --- resource models -------------------------------------------------------------------------

FIELDS: dict[str, dict[str, Support]] = {
    "Resource": {
        "apiVersion": supported("must be projectcalico.org/v3"),
        "kind": SUPPORTED,
        "metadata": SUPPORTED,
        "spec": SUPPORTED,
    },
    "ObjectMeta": {
        "name": SUPPORTED,
        "namespace": supported("namespaced kinds only"),
        "labels": supported("matched by selectors (endpoints, network sets, nodes)"),
        "annotations": supported("stored and shown"),
        "resourceVersion": supported("the etcd revision; checked on replace"),
        "uid": supported("set on create"),
        "creationTimestamp": supported("set on create"),
        "generateName": noop(_K8S_META),
        "generation": noop(_K8S_META),
        "ownerReferences": noop("Kubernetes garbage collection; nothing deletes by owner here"),
        "finalizers": noop("Kubernetes deletion hooks; a delete here is immediate"),
        "deletionTimestamp": noop("Kubernetes graceful deletion; a delete here is immediate"),
        "deletionGracePeriodSeconds": noop(
            "Kubernetes graceful deletion; a delete here is immediate"
        ),
        "managedFields": noop("Kubernetes server-side apply bookkeeping"),
        "selfLink": noop(_K8S_META),
    },
    # --- endpoints ---
    "WorkloadEndpointSpec": {
        "orchestrator": SUPPORTED,
        "workload": SUPPORTED,
        "node": SUPPORTED,
        "containerID": SUPPORTED,
        "pod": SUPPORTED,
        "endpoint": SUPPORTED,
        "serviceAccountName": supported("becomes the serviceaccount label"),
        "ipNetworks": SUPPORTED,
        "ipNATs": supported("floating IPs: DNAT/SNAT and routes"),
        "ipv4Gateway": noop("informational: the workload's own routing is set up by CNI"),
        "ipv6Gateway": noop("informational: the workload's own routing is set up by CNI"),
        "profiles": SUPPORTED,
        "interfaceName": SUPPORTED,
        "mac": supported("the DHCP agent's host entries"),
        "ports": supported("named ports in policy rules"),
        "allowSpoofedSourcePrefixes": SUPPORTED,
        "allowedIps": supported(
            "networking-calico's allowed address pairs: not served by the DHCP agent; Felix"
            " routes and permits them as ipNetworks (upstream Felix ignores the field too)"
        ),
        "qosControls": refused(
            "Felix does not shape bandwidth, packet rate or connections (no tc/qdisc)"
        ),
        "awsElasticIPs": refused("AWS elastic IP assignment is not implemented"),
    },
    "IPNAT": {"internalIP": SUPPORTED, "externalIP": SUPPORTED},
    "WorkloadEndpointPort": {
        "name": SUPPORTED,
        "protocol": SUPPORTED,
        "port": SUPPORTED,
        "hostPort": refused(
            "host port forwarding (the portmap CNI plugin's job) is not implemented", 0
        ),
        "hostIP": refused("host port forwarding is not implemented"),
    },
    "HostEndpointSpec": {
        "node": SUPPORTED,
        "interfaceName": SUPPORTED,
        "expectedIPs": SUPPORTED,
        "profiles": SUPPORTED,
        "ports": supported("named ports in policy rules"),
    },
    "EndpointPort": {"name": SUPPORTED, "protocol": SUPPORTED, "port": SUPPORTED},
    # --- policy ---
    "TierSpec": {"order": SUPPORTED, "defaultAction": SUPPORTED},
    "_PolicySpecBase": {
        "tier": SUPPORTED,
        "order": SUPPORTED,
        "selector": SUPPORTED,
        "types": SUPPORTED,
        "ingress": SUPPORTED,
        "egress": SUPPORTED,
        "serviceAccountSelector": SUPPORTED,
        "performanceHints": noop("a hint to pre-program policy; Felix's output is the same"),
    },
    "GlobalNetworkPolicySpec": {
        "namespaceSelector": SUPPORTED,
        "doNotTrack": supported("raw table"),
        "preDNAT": supported("mangle table"),
        "applyOnForward": SUPPORTED,
    },
    "ProfileSpec": {
        "ingress": SUPPORTED,
        "egress": SUPPORTED,
        "labelsToApply": supported("inherited by the endpoints using the profile"),
    },
    "NetworkSetSpec": {"nets": SUPPORTED},
    "Rule": {
        "action": SUPPORTED,
        "ipVersion": SUPPORTED,
        "protocol": SUPPORTED,
        "icmp": SUPPORTED,
        "notProtocol": SUPPORTED,
        "notICMP": SUPPORTED,
        "source": SUPPORTED,
        "destination": SUPPORTED,
        "http": refused(
            "HTTP matches need an L7 proxy (Dikastes/Envoy); dropping the match would widen"
            " the rule to all TCP",
            alternative="match on ports instead",
        ),
        "metadata": noop("rule annotations are informational"),
    },
    "ICMPFields": {"type": SUPPORTED, "code": SUPPORTED},
    "EntityRule": {
        "nets": SUPPORTED,
        "selector": SUPPORTED,
        "namespaceSelector": SUPPORTED,
        "services": refused(
            _K8S_SERVICES + "; the match would never match",
            alternative="match the service's endpoints with a selector or nets",
        ),
        "ports": SUPPORTED,
        "notNets": SUPPORTED,
        "notSelector": SUPPORTED,
        "notPorts": SUPPORTED,
        "serviceAccounts": SUPPORTED,
    },
    "ServiceAccountMatch": {"names": SUPPORTED, "selector": SUPPORTED},
    # --- IP pools and IPAM ---
    "IPPoolSpec": {
        "cidr": SUPPORTED,
        "vxlanMode": supported(
            "VXLAN overlay: Always, or CrossSubnet (encapsulated only to hosts on other subnets)"
        ),
        "ipipMode": refused(
            _IPIP, "Never", alternative="use ipipMode: Never (vxlanMode gives an overlay)"
        ),
        "natOutgoing": SUPPORTED,
        "disabled": SUPPORTED,
        "disableBGPExport": SUPPORTED,
        "blockSize": SUPPORTED,
        "nodeSelector": SUPPORTED,
        "namespaceSelector": refused(
            "IPAM has no namespaces to select on",
            alternative="name the pool in the CNI configuration (ipam.ipv4_pools)",
        ),
        "allowedUses": refused(
            "workload (CNI) and VXLAN tunnel addresses are allocated; no LoadBalancer IPAM",
            "Workload",
            "Tunnel",
        ),
        "assignmentMode": SUPPORTED,
    },
    "IPAMConfigurationSpec": {
        "strictAffinity": SUPPORTED,
        "maxBlocksPerHost": SUPPORTED,
        "autoAllocateBlocks": SUPPORTED,
        "kubeVirtVMAddressPersistence": refused("there is no KubeVirt integration", "Disabled"),
        "ipCooldownSeconds": refused(
            "released addresses are reusable at once (at the back of the block's FIFO, which is"
            " what 0 means upstream); no cooldown is kept",
            0,
        ),
    },
    # --- BGP ---
    "BGPPeerSpec": {
        "node": SUPPORTED,
        "nodeSelector": SUPPORTED,
        "peerIP": SUPPORTED,
        "asNumber": SUPPORTED,
        "localASNumber": SUPPORTED,
        "peerSelector": SUPPORTED,
        "localWorkloadSelector": refused("BGP peering with workloads is not implemented"),
        "keepOriginalNextHop": supported(
            "BIRD's `next hop keep` towards an eBGP peer; as upstream, no effect on iBGP peers"
        ),
        "nextHopMode": SUPPORTED,
        "password": supported(_SECRETS.format("peer's session")),
        "sourceAddress": SUPPORTED,
        "failureDetectionMode": refused("BFD is not implemented", "None"),
        "restartMode": refused("long-lived graceful restart is not rendered", "GracefulRestart"),
        "maxRestartTime": SUPPORTED,
        "birdGatewayMode": refused("BIRD's direct gateway mode is not rendered", "Recursive"),
        "numAllowedLocalASNumbers": SUPPORTED,
        "ttlSecurity": SUPPORTED,
        "keepaliveTime": SUPPORTED,
        "reachableBy": supported(
            "BIRD installs a /32 or /128 to peerIP via this gateway; one of the other address"
            " family leaves the peer out, as upstream"
        ),
        "filters": refused("BGPFilter resources are not implemented"),
        "reversePeering": refused("the other side always peers back (as Auto)", "Auto"),
    },
    "BGPConfigurationSpec": {
        "logSeverityScreen": SUPPORTED,
        "nodeToNodeMeshEnabled": SUPPORTED,
        "asNumber": SUPPORTED,
        "serviceLoadBalancerIPs": refused(_K8S_SERVICES + "; nothing advertises them"),
        "serviceExternalIPs": refused(_K8S_SERVICES + "; nothing advertises them"),
        "serviceClusterIPs": refused(_K8S_SERVICES + "; nothing advertises them"),
        "serviceLoadBalancerAggregation": noop(
            "how serviceLoadBalancerIPs are advertised; those are refused"
        ),
        "communities": supported("named standard (`aa:nn`) and large (`aa:nn:mm`) communities"),
        "prefixAdvertisements": supported(
            "communities added to this node's exported routes within cidr; a node's"
            " `node.<name>` configuration with prefixAdvertisements replaces the default's"
        ),
        "listenPort": SUPPORTED,
        "nodeMeshPassword": supported(_SECRETS.format("mesh sessions")),
        "nodeMeshMaxRestartTime": SUPPORTED,
        "bindMode": SUPPORTED,
        "ignoredInterfaces": SUPPORTED,
        "localWorkloadPeeringIPV4": refused("BGP peering with workloads is not implemented"),
        "localWorkloadPeeringIPV6": refused("BGP peering with workloads is not implemented"),
        "programClusterRoutes": refused(
            "Felix programs no cluster routes, so BIRD must (Disabled would leave remote"
            " blocks unrouted)",
            "Enabled",
        ),
        "ipv4NormalRoutePriority": refused("BIRD's kernel route metric is fixed", 1024),
        "ipv6NormalRoutePriority": refused("BIRD's kernel route metric is fixed", 1024),
        "nodeMeshMaxRestartTimeSeconds": refused(
            "a deprecated form", alternative="use nodeMeshMaxRestartTime"
        ),
    },
    "BGPPassword": {"secretKeyRef": SUPPORTED},
    "SecretKeyRef": {
        "name": supported("a directory under `$CALICO_SECRETS_DIR`"),
        "key": supported("a file in that directory (mode without access for others)"),
        "optional": refused(
            "a missing secret never yields a session without a password (fail closed)", False
        ),
    },
    "Community": {"name": SUPPORTED, "value": SUPPORTED},
    "PrefixAdvertisement": {"cidr": SUPPORTED, "communities": SUPPORTED},
    # --- nodes and cluster ---
    "Node": {"status": noop(_UPSTREAM_NODE + " (its status)")},
    "NodeSpec": {
        "bgp": SUPPORTED,
        "ipv4VXLANTunnelAddr": supported(_VXLAN_NODE.format("tunnel address", "IPv4")),
        "vxlanTunnelMACAddr": supported(_VXLAN_NODE.format("VTEP MAC", "IPv4")),
        "ipv6VXLANTunnelAddr": supported(_VXLAN_NODE.format("tunnel address", "IPv6")),
        "vxlanTunnelMACAddrV6": supported(_VXLAN_NODE.format("VTEP MAC", "IPv6")),
        "orchRefs": noop("Kubernetes node name mapping; nodes are named by their hostname"),
        "wireguard": noop(_TUNNEL_ADDR.format("WireGuard").replace(" pools", "")),
        "addresses": noop(_UPSTREAM_NODE + "; BGP uses spec.bgp addresses"),
        "interfaces": noop(_UPSTREAM_NODE + " (for automatic host endpoints)"),
    },
    "NodeBGPSpec": {
        "asNumber": SUPPORTED,
        "ipv4Address": SUPPORTED,
        "ipv6Address": SUPPORTED,
        "ipv4IPIPTunnelAddr": noop(_TUNNEL_ADDR.format("IPIP")),
        "routeReflectorClusterID": SUPPORTED,
    },
    "ClusterInformationSpec": {
        "clusterGUID": SUPPORTED,
        "clusterType": SUPPORTED,
        "calicoVersion": SUPPORTED,
        "datastoreReady": supported("Felix waits for it"),
        "variant": noop("display only"),
    },
}

# --- FelixConfiguration ----------------------------------------------------------------------

# The fields Felix's config layer (calico.felix.config) reads; a test keeps the two in step.
FELIX_SUPPORTED: tuple[str, ...] = (
    "interfacePrefix",
    "defaultEndpointToHostAction",
    "iptablesFilterAllowAction",
    "iptablesFilterDenyAction",
    "iptablesMangleAllowAction",
    "chainInsertMode",
    "logPrefix",
    "logSeverityScreen",
    "ipv6Support",
    "reportingInterval",
    "reportingTTL",
    "endpointReportingEnabled",
    "endpointReportingDelay",
    "healthEnabled",
    "healthHost",
    "healthPort",
    "prometheusMetricsEnabled",
    "prometheusMetricsHost",
    "prometheusMetricsPort",
    "failsafeInboundHostPorts",
    "failsafeOutboundHostPorts",
    "iptablesRefreshInterval",
    "ipsetsRefreshInterval",
    "routeRefreshInterval",
    "interfaceRefreshInterval",
    "iptablesMarkMask",
    "iptablesBackend",
    "metadataAddr",
    "metadataPort",
    "removeExternalRoutes",
    "openstackRegion",
    "floatingIPs",
    "natOutgoingAddress",
    "natPortRange",
    "iptablesNATOutgoingInterfaceFilter",
    "disableConntrackInvalidCheck",
    "allowVXLANPacketsFromWorkloads",
    "allowIPIPPacketsFromWorkloads",
    "vxlanEnabled",
    "vxlanPort",
    "vxlanVNI",
    "vxlanMTU",
    "vxlanMTUV6",
)

_GO_ONLY = "a Go runtime setting; calico-py is Python"
_NOT_TUNABLE = "calico-py has no such knob"

FELIX_NOOP: dict[str, str] = {
    "prometheusGoMetricsEnabled": _GO_ONLY,
    "prometheusProcessMetricsEnabled": "calico-py exports its own metrics only",
    "prometheusWireGuardMetricsEnabled": "WireGuard is refused, so there are none",
    "usageReportingEnabled": "calico-py never reports usage",
    "usageReportingInitialDelay": "calico-py never reports usage",
    "usageReportingInterval": "calico-py never reports usage",
    "debugDisableLogDropping": "calico-py never drops log lines",
    "xdpEnabled": "an optimisation: untracked policy is enforced in the raw table either way",
    "genericXDPEnabled": "an optimisation: untracked policy is enforced in the raw table either"
    " way",
    "goGCThreshold": _GO_ONLY,
    "goMemoryLimitMB": _GO_ONLY,
    "goMaxProcs": _GO_ONLY,
    "cgroupV2Path": "read by upstream's init container only",
    "windowsManageFirewallRules": "Windows only",
    "iptablesLockFilePath": "removed upstream; iptables-restore takes the lock itself",
    "iptablesLockTimeout": "removed upstream; iptables-restore takes the lock itself",
    "bpfKubeProxyEndpointSlicesEnabled": "removed upstream",
}

# Refused FelixConfiguration fields: (reason, accepted values (upstream default and "off"),
# alternative). Defaults are Felix's (felix/config/config_params.go).
_FELIX_REFUSED: dict[str, tuple[str, tuple[Any, ...], str]] = {
    "nodeSelector": ("only `default` and `node.<name>` FelixConfigurations are layered", (), ""),
    "useInternalDataplaneDriver": ("external dataplane drivers are not implemented", (True,), ""),
    "dataplaneDriver": (
        "external dataplane drivers are not implemented",
        ("calico-iptables-plugin",),
        "",
    ),
    "dataplaneWatchdogTimeout": ("the dataplane health timeout is fixed at 90s", ("90s",), ""),
    "iptablesPostWriteCheckInterval": (
        _NOT_TUNABLE + "; periodic refreshes repair tables",
        ("5s",),
        "use iptablesRefreshInterval",
    ),
    "iptablesLockProbeInterval": ("iptables-restore takes the xtables lock itself", ("50ms",), ""),
    "featureDetectOverride": ("kernel feature detection cannot be overridden", (), ""),
    "featureGates": ("there are no feature gates", (), ""),
    "maxIpsetSize": (_NOT_TUNABLE, (1048576,), ""),
    "xdpRefreshInterval": ("XDP is not implemented", ("90s",), ""),
    "netlinkTimeout": (_NOT_TUNABLE, ("10s",), ""),
    "interfaceExclude": ("excluding host interfaces is not implemented", ("kube-ipvs0",), ""),
    "logActionRateLimit": ("Log rules are not rate limited", (), ""),
    "logActionRateLimitBurst": ("Log rules are not rate limited", (5,), ""),
    "logFilePath": (
        "Felix logs to stderr only",
        ("/var/log/calico/felix.log", "none"),
        "redirect Felix's stderr",
    ),
    "logSeverityFile": ("Felix logs to stderr only", ("Info",), "use logSeverityScreen"),
    "logSeveritySys": ("Felix does not log to syslog", ("Info",), "use logSeverityScreen"),
    "logDebugFilenameRegex": ("debug logs are not filtered by file", (), ""),
    "ipipEnabled": (_IPIP, (False,), ""),
    "ipipMTU": (_IPIP, (0,), ""),
    "endpointStatusPathPrefix": (
        "Felix writes no endpoint status files",
        ("/var/run/calico", "none"),
        "use endpointReportingEnabled",
    ),
    "healthTimeoutOverrides": ("health timeouts are fixed", (), ""),
    "prometheusMetricsCAFile": ("the metrics endpoint has no TLS", (), ""),
    "prometheusMetricsCertFile": ("the metrics endpoint has no TLS", (), ""),
    "prometheusMetricsKeyFile": ("the metrics endpoint has no TLS", (), ""),
    "prometheusMetricsClientAuth": ("the metrics endpoint has no TLS", ("NoClientCert",), ""),
    "kubeNodePortRanges": (_K8S_SERVICES, ("30000:32767",), ""),
    "policySyncPathPrefix": ("the policy sync API (for L7 proxies) is not implemented", (), ""),
    "natOutgoingExclusions": (
        "natOutgoing excludes IP pool destinations only",
        ("IPPoolsOnly",),
        "",
    ),
    "deviceRouteSourceAddress": ("workload routes carry no source address", (), ""),
    "deviceRouteSourceAddressIPv6": ("workload routes carry no source address", (), ""),
    "deviceRouteProtocol": ("workload routes use protocol 80", (3, 80), ""),
    "programClusterRoutes": ("Felix programs no cluster routes; BIRD does", ("Disabled",), ""),
    "ipForwarding": (
        "Felix does not manage IP forwarding sysctls; the host must enable them",
        ("Enabled",),
        "",
    ),
    "externalNodesList": ("external (non-Calico) nodes are not implemented", (), ""),
    "debugMemoryProfilePath": ("there are no memory profiles", (), ""),
    "debugSimulateCalcGraphHangAfter": ("a test hook calico-py lacks", ("0s",), ""),
    "debugSimulateDataplaneHangAfter": ("a test hook calico-py lacks", ("0s",), ""),
    "debugSimulateDataplaneApplyDelay": ("a test hook calico-py lacks", ("0s",), ""),
    "debugHost": ("there is no debug server", ("localhost",), ""),
    "debugPort": ("there is no debug server", (0,), ""),
    "sidecarAccelerationEnabled": ("sidecar acceleration is not implemented", (False,), ""),
    "nftablesMode": (_NFTABLES, ("Disabled", "Auto"), _NFT_ALT),
    "nftablesRefreshInterval": (_NFTABLES, ("180s",), _NFT_ALT),
    "nftablesFilterAllowAction": (_NFTABLES, ("Accept",), _NFT_ALT),
    "nftablesMangleAllowAction": (_NFTABLES, ("Accept",), _NFT_ALT),
    "nftablesFilterDenyAction": (_NFTABLES, ("Drop",), _NFT_ALT),
    "nftablesMarkMask": (_NFTABLES, (0xFFFF0000,), _NFT_ALT),
    "nftablesFlowTableOffload": (_NFTABLES, ("Disabled",), _NFT_ALT),
    "nftablesFlowTableDataIfacePattern": (_NFTABLES, (), _NFT_ALT),
    "istioAmbientMode": (_ISTIO, ("Disabled",), ""),
    "istioDSCPMark": (_ISTIO, (23,), ""),
    "flowLogsPolicyEvaluationMode": (_FLOW_LOGS, ("Continuous", "None"), ""),
    "flowLogsFlushInterval": (_FLOW_LOGS, ("300s",), ""),
    "flowLogsCollectorDebugTrace": (_FLOW_LOGS, (False,), ""),
    "flowLogsGoldmaneServer": (_FLOW_LOGS, (), ""),
    "flowLogsLocalReporter": (_FLOW_LOGS, ("Disabled",), ""),
    "flowLogsSamplingRate": (_FLOW_LOGS, (1,), ""),
    "routeSource": (
        "routes come from workload endpoints (WorkloadIPs)",
        ("WorkloadIPs", "CalicoIPAM"),
        "",
    ),
    "routeTableRanges": ("Felix uses the main routing table only", (), ""),
    "routeTableRange": ("Felix uses the main routing table only", (), ""),
    "routeSyncDisabled": ("route programming cannot be turned off", (False,), ""),
    "ipv4NormalRoutePriority": ("workload route metrics are fixed", (1024,), ""),
    "ipv4ElevatedRoutePriority": ("workload route metrics are fixed", (512,), ""),
    "ipv6NormalRoutePriority": ("workload route metrics are fixed", (1024,), ""),
    "ipv6ElevatedRoutePriority": ("workload route metrics are fixed", (512,), ""),
    "liveMigrationRouteConvergenceTime": ("VM live migration is not implemented", ("30s",), ""),
    "wireguardEnabled": (_WIREGUARD, (False,), ""),
    "wireguardEnabledV6": (_WIREGUARD, (False,), ""),
    "wireguardThreadingEnabled": (_WIREGUARD, (False,), ""),
    "wireguardListeningPort": (_WIREGUARD, (51820,), ""),
    "wireguardListeningPortV6": (_WIREGUARD, (51821,), ""),
    "wireguardRoutingRulePriority": (_WIREGUARD, (99,), ""),
    "wireguardInterfaceName": (_WIREGUARD, ("wireguard.cali",), ""),
    "wireguardInterfaceNameV6": (_WIREGUARD, ("wg-v6.cali",), ""),
    "wireguardMTU": (_WIREGUARD, (0,), ""),
    "wireguardMTUV6": (_WIREGUARD, (0,), ""),
    "wireguardHostEncryptionEnabled": (_WIREGUARD, (False,), ""),
    "wireguardKeepAlive": (_WIREGUARD, ("0s",), ""),
    "awsSrcDstCheck": ("AWS integration is not implemented", ("DoNothing",), ""),
    "serviceLoopPrevention": (_K8S_SERVICES, ("Drop", "Disabled"), ""),
    "workloadSourceSpoofing": (
        "use the WorkloadEndpoint's allowSpoofedSourcePrefixes",
        ("Disabled",),
        "",
    ),
    "mtuIfacePattern": (
        "MTU auto-detection is not implemented",
        ("^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)",),
        "",
    ),
    "localSubnetL2Reachability": (
        "proxy ARP/NDP for workloads is not implemented",
        ("Disabled",),
        "",
    ),
    "localSubnetL2ReachabilityRefreshInterval": (
        "proxy ARP/NDP for workloads is not implemented",
        ("120s",),
        "",
    ),
    "requireMTUFile": ("MTU auto-detection is not implemented", (False,), ""),
}
# The eBPF dataplane's knobs: refused beyond their upstream defaults.
_BPF_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "bpfEnabled": (False,),
    "bpfOverlayHostSourceIP": ("TunnelAddress",),
    "bpfDisableUnprivileged": (True,),
    "bpfJITHardening": ("Auto",),
    "bpfLogLevel": ("Off",),
    "bpfConntrackLogLevel": ("Off",),
    "bpfConntrackMode": ("Auto",),
    "bpfConntrackTimeouts": (),
    "bpfIPFragTimeout": ("0s",),
    "bpfLogFilters": (),
    "bpfCTLBLogFilter": (),
    "bpfDataIfacePattern": ("^((en|wl|ww|sl|ib)[Popsx].*|(eth|wlan|wwan|bond).*)",),
    "bpfL3IfacePattern": (),
    "bpfConnectTimeLoadBalancingEnabled": (),
    "bpfConnectTimeLoadBalancing": ("TCP",),
    "bpfHostNetworkedNATWithoutCTLB": ("Enabled",),
    "bpfExternalServiceMode": ("Tunnel",),
    "bpfDSROptoutCIDRs": (),
    "bpfExtToServiceConnmark": (0,),
    "bpfKubeProxyIptablesCleanupEnabled": (True,),
    "bpfKubeProxyMinSyncPeriod": ("1s",),
    "bpfKubeProxyHealthzPort": (10256,),
    "bpfPSNATPorts": ("20000:29999",),
    "bpfMapSizeNATFrontend": (65536,),
    "bpfMapSizeNATBackend": (262144,),
    "bpfMapSizeNATAffinity": (65536,),
    "bpfMapSizeRoute": (262144,),
    "bpfMapSizeConntrack": (512000,),
    "bpfMapSizePerCpuConntrack": (0,),
    "bpfMapSizeConntrackScaling": ("DoubleIfFull",),
    "bpfMapSizeConntrackCleanupQueue": (100000,),
    "bpfMapSizeIPSets": (1048576,),
    "bpfMapSizeIfState": (1000,),
    "bpfHostConntrackBypass": (False,),
    "bpfIPFragmentReassemblyEnabled": (True,),
    "bpfEnforceRPF": ("Loose",),
    "bpfPolicyDebugEnabled": (True,),
    "bpfForceTrackPacketsFromIfaces": ("docker+",),
    "bpfDisableGROForIfaces": (),
    "bpfExcludeCIDRsFromNAT": (),
    "bpfExportBufferSizeMB": (1,),
    "bpfRedirectToPeer": ("Enabled",),
    "bpfAttachType": ("TCX",),
    "bpfProfiling": ("Disabled",),
    "bpfMaglevMaxEndpointsPerService": (100,),
    "bpfMaglevMaxServices": (100,),
}


def _felix_table() -> dict[str, Support]:
    table: dict[str, Support] = {}
    for name in (*FELIX_FIELDS, *REMOVED_FELIX_FIELDS):
        if name in FELIX_SUPPORTED:
            table[name] = SUPPORTED
        elif name in FELIX_NOOP:
            table[name] = noop(FELIX_NOOP[name])
        elif name in _BPF_DEFAULTS:
            table[name] = refused(_BPF, *_BPF_DEFAULTS[name])
        elif name in _FELIX_REFUSED:
            reason, accepts, alternative = _FELIX_REFUSED[name]
            table[name] = refused(reason, *accepts, alternative=alternative)
    return table


FELIX: dict[str, Support] = _felix_table()
FIELDS["FelixConfigurationSpec"] = FELIX

_ETCD_ALT = "use ETCD_ENDPOINTS, ETCD_CA_CERT_FILE, ETCD_CERT_FILE and ETCD_KEY_FILE"

# Felix's parameters that have no FelixConfiguration field (environment and config file
# only), by lower-cased name. The upstream ones are Felix's (felix/config/config_params.go).
FELIX_LOCAL: dict[str, Support] = {
    "felixhostname": supported("the node name; also NODENAME"),
    "calicorundir": supported("where Felix writes its files; also CALICO_RUN_DIR"),
    "mtufilepath": supported(
        "calico-py's: where Felix writes the workloads' MTU while VXLAN is in use (default"
        " /var/lib/calico/mtu, Calico's fixed path, where the CNI plugin reads it; the one"
        " Felix file outside CalicoRunDir, so hosts sharing a machine set it apart)"
    ),
    "datastoretype": refused("only the etcdv3 datastore is implemented", "etcdv3"),
    **{
        f"etcd{name}": refused(
            "Felix reads the datastore settings calico-py's way", alternative=_ETCD_ALT
        )
        for name in ("addr", "scheme", "endpoints", "keyfile", "certfile", "cafile")
    },
    **{
        f"typha{name}": refused("Typha is not implemented; Felix reads etcd directly")
        for name in (
            "addr",
            "k8sservicename",
            "k8snamespace",
            "readtimeout",
            "writetimeout",
            "keyfile",
            "certfile",
            "cafile",
            "cn",
            "urisan",
        )
    },
    "ipv4vxlantunneladdr": refused(_FROM_NODE),
    "ipv6vxlantunneladdr": refused(_FROM_NODE),
    "vxlantunnelmacaddr": refused(_FROM_NODE),
    "vxlantunnelmacaddrv6": refused(_FROM_NODE),
    "ipiniptunneladdr": refused(_IPIP),
    "clusterguid": noop("usage reporting only; calico-py never reports usage"),
    "clustertype": noop(
        "usage reporting and upstream's OpenStack detection; calico-py's"
        " OpenStack handling is configured explicitly"
    ),
    "calicoversion": noop("usage reporting only; calico-py never reports usage"),
    "variant": noop("display only"),
    "debugcpuprofilepath": refused("there is no CPU profiler", "/tmp/felix-cpu-<timestamp>.pprof"),
    "debugpanicafter": refused("a test hook calico-py lacks", "0", "0s"),
    "debugsimulatedatarace": refused("a test hook calico-py lacks", "false"),
    "debugbpfcgroupv2": refused(_BPF),
}


# --- lookups ---------------------------------------------------------------------------------


def lookup(cls: type, field: str) -> Support | None:
    """A field's classification, searching the class and then its bases by name."""
    for base in cls.__mro__:
        found = FIELDS.get(base.__name__, {}).get(field)
        if found is not None:
            return found
    return None


# Where refused fields lie below a resource class: field name -> (its value is a list to
# iterate, the field's Support if it is refused, else the tree below it).
Tree = dict[str, tuple[bool, "Support | Tree"]]
_TREES: dict[type, Tree] = {}


def refusal_tree(cls: type[BaseModel]) -> Tree:
    """The REFUSED fields below a resource class, as a tree of field names (cached).

    A resource is checked by walking only this tree, once, so its parts cost nothing more to
    validate; nothing below a refused or no-op field needs checking."""
    tree = _TREES.get(cls)
    if tree is None:
        tree = _TREES[cls] = _refusable(cls, ())
    return tree


def _refusable(cls: type[BaseModel], stack: tuple[type, ...]) -> Tree:
    tree: Tree = {}
    for name, info in cls.model_fields.items():
        support = lookup(cls, name)
        if support is not None and support.status is Status.REFUSED:
            tree[name] = (False, support)
        elif support is None or support.status is Status.SUPPORTED:
            for nested, is_list in _nested_models(info.annotation):
                below = _refusable(nested, (*stack, cls)) if nested not in stack else {}
                if below:
                    tree[name] = (is_list, below)
    return tree


def first_refusal(resource: BaseModel) -> tuple[str, str] | None:
    """(field path, message) for the first refused value anywhere in `resource`, if any."""
    return _scan(resource, refusal_tree(type(resource)))


def _scan(obj: Any, tree: Tree) -> tuple[str, str] | None:
    for name, (is_list, below) in tree.items():
        value = getattr(obj, name, None)
        if value is None:
            continue
        if isinstance(below, Support):
            plain = _plain(value)
            if below.refuses(plain):
                return name, below.message(plain)
            continue
        for index, item in enumerate(value) if is_list else ((None, value),):
            found = _scan(item, below)
            if found is not None:
                where = name if index is None else f"{name}.{index}"
                return f"{where}.{found[0]}", found[1]
    return None


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(exclude_none=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    kind: str
    path: str  # e.g. spec.ingress[].destination.services
    support: Support | None  # None: unclassified (a test fails)
    under: str = ""  # the refused or no-op field this one is part of, if any


def walk() -> Iterator[Row]:
    """Every field path of every kind, in declaration order (recursing into nested models).

    A field inside a refused or no-op field shares that field's status (`under` names it),
    so such nested structures need no entries of their own."""
    from calico.model.registry import KINDS

    for kind, cls in KINDS.items():
        yield from _walk(kind, cls, "", (), None)


def _walk(
    kind: str, cls: type[BaseModel], prefix: str, stack: tuple[type, ...], under: Row | None
) -> Iterator[Row]:
    for name, info in cls.model_fields.items():
        path = f"{prefix}{name}"
        if under is not None:
            row = Row(kind, path, under.support, under.under or under.path)
        else:
            row = Row(kind, path, lookup(cls, name))
        yield row
        status = row.support.status if row.support else Status.SUPPORTED
        parent = row if under is not None or status is not Status.SUPPORTED else None
        for nested, is_list in _nested_models(info.annotation):
            if nested in stack:
                continue
            sub = f"{path}{'[]' if is_list else ''}."
            yield from _walk(kind, nested, sub, (*stack, cls), parent)


def _nested_models(annotation: Any) -> Iterator[tuple[type[BaseModel], bool]]:
    def inner(tp: Any, in_list: bool) -> Iterator[tuple[type[BaseModel], bool]]:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            yield tp, in_list
            return
        origin = get_origin(tp)
        for arg in get_args(tp):
            yield from inner(arg, in_list or origin is list)

    yield from inner(annotation, False)


def render() -> str:
    """docs/support.md."""
    lines = [
        "# What calico-py supports, field by field",
        "",
        "Generated from `src/calico/model/support.py`; do not edit. Regenerate with",
        "`python -m calico.model.support > docs/support.md` (a unit test compares).",
        "",
        "- **supported**: it works here and is tested.",
        "- **accepted as no-op**: accepted and stored; it has no effect, for the reason given.",
        "- **refused**: a value that asks for something calico-py does not do is an error where",
        "  it enters (calicoctl, and any reader of the datastore, which treats the resource as",
        "  invalid: a policy fails closed, a pool is not used). Absent or empty values and the",
        "  values listed as accepted (upstream's default or an explicit off) stay accepted.",
        "",
        "Felix's environment variables (`FELIX_<NAME>`) and config file keys follow the",
        "FelixConfiguration rows: the same parameter, the same classification.",
    ]
    current = ""
    for row in walk():
        if row.kind != current:
            current = row.kind
            lines += ["", f"## {current}", "", "| Field | Status | Notes |", "| --- | --- | --- |"]
        support = row.support
        status = support.status.value if support else "UNCLASSIFIED"
        notes = f"as `{row.under}`" if row.under else support.describe() if support else ""
        notes = notes.replace("|", "\\|")
        lines.append(f"| `{row.path}` | {status} | {notes} |")
    lines += [
        "",
        "## Felix parameters without a FelixConfiguration field",
        "",
        "Set as `FELIX_<NAME>` or in `felix.cfg` only (names are case-insensitive); any other",
        "unknown name stops Felix.",
        "",
        "| Parameter | Status | Notes |",
        "| --- | --- | --- |",
    ]
    for name, support in FELIX_LOCAL.items():
        notes = support.describe().replace("|", "\\|")
        lines.append(f"| `{name}` | {support.status.value} | {notes} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
