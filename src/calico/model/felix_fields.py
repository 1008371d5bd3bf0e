"""FelixConfigurationSpec fields, as in Calico's projectcalico.org/v3 API (v3.32 development line).

Source read: ``api/pkg/apis/projectcalico/v3/felixconfig.go`` at the v3.32-era master snapshot
held in the bewing/calico mirror of projectcalico/calico, commit
94737ebd766bbd6fd128c99a87410a4fcaa338d4 (copyright 2017-2026; the copy of projectcalico/calico
itself in our index, commit 00157c193174b8fe2db174a01edc831a945df8de, is an older ~v3.28 tree).
Cross-checked against a v3.30-era copy of the same file, the released CRD schema as mirrored by
metio/terraform-provider-k8s, and ``libcalico-go/lib/validator/v3/validator.go``.

One entry per JSON field name: its value kind and, where Calico constrains it, the allowed
values or pattern. calico.model builds the FelixConfiguration schema from this table.

Conventions:

* ``choices`` holds the canonical spellings. When ``pattern`` is also set and starts with
  ``(?i)``, Calico's CRD schema matches case-insensitively (and also accepts ""), so a
  consumer that wants Calico's exact behaviour should apply ``pattern`` rather than ``choices``.
* ``pattern`` is written for ``re.fullmatch`` (no ``^``/``$`` anchors). For list kinds it
  applies to each item; for "object" kinds whose values are all strings it applies to each value.
* ``item_kind`` is informational: "cidr" marks lists whose items Calico parses as an IP or CIDR,
  "str"/"int" give the value type of an object's keys.
* ``REMOVED_FELIX_FIELDS`` lists fields that released versions (up to v3.31) still accepted but
  that are gone from the struct read here; older manifests may still carry them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FelixField:
    # One of: "bool", "int", "float", "str", "duration", "str_list", "int_list",
    # "port_list" (list of numorstring.Port: int or "lo:hi"), "proto_port_list"
    # (list of {protocol, port, net?}), "str_map" (map[string]string),
    # "object" (nested struct not validated in depth; its known keys in `keys`),
    # "object_list" (list of such structs; `keys` likewise), "int_or_str".
    kind: str
    choices: tuple[str, ...] = ()  # allowed string values (enums / oneof / regex alternations)
    pattern: str = ""  # a Python regex the string must fully match, when Calico uses one
    minimum: int | None = None
    maximum: int | None = None
    keys: tuple[str, ...] = ()  # for object/object_list: allowed JSON keys
    item_kind: str = ""  # for object maps etc. if needed


# Kubebuilder duration pattern used on most metav1.Duration fields. Calico's Go source doubles
# the backslash (so the generated CRD regex literally wants "\" before the fraction); this is
# the evidently intended form. Note it rejects a bare "0" (a unit is required) and "us"/"ns".
_DURATION = r"([0-9]+(\.[0-9]+)?(ms|s|m|h))*"

# validator.go: interfaceRegex (plus the "*" wildcard) and ifaceFilterRegex.
_INTERFACE = r"\*|[a-zA-Z0-9_.-]{1,15}"
_IFACE_FILTER = r"[a-zA-Z0-9:._+-]{1,15}"

# numorstring.Port when given as a string: a single port or an inclusive "lo:hi" range.
_PORT_OR_RANGE = r"[0-9]+(:[0-9]+)?"

# BPFConntrackTimeout values: a duration-like string or "Auto".
_CT_TIMEOUT = r"(([0-9]*(\.[0-9]*)?(ms|s|h|m|us)+)+|Auto)"

_LOG_LEVELS = ("Trace", "Debug", "Info", "Warning", "Error", "Fatal")
_LOG_LEVEL_PATTERN = r"(?i)(Trace|Debug|Info|Warning|Error|Fatal)?"
_ENABLED_DISABLED = ("Enabled", "Disabled")
_ACCEPT_RETURN = ("Accept", "Return")
_ACCEPT_RETURN_PATTERN = r"(?i)(Accept|Return)?"
_DROP_REJECT = ("Drop", "Reject")
_DROP_REJECT_PATTERN = r"(?i)(Drop|Reject)?"
_UINT32_MAX = 4294967295
_ROUTE_PRIORITY_MAX = 2147483646

_DSCP_NAMES = (
    "DF",
    "EF",
    "AF11",
    "AF12",
    "AF13",
    "AF21",
    "AF22",
    "AF23",
    "AF31",
    "AF32",
    "AF33",
    "AF41",
    "AF42",
    "AF43",
    "CS0",
    "CS1",
    "CS2",
    "CS3",
    "CS4",
    "CS5",
    "CS6",
)

_PROTO_PORT_KEYS = ("protocol", "port", "net")
_RANGE_KEYS = ("min", "max")
_CT_TIMEOUT_KEYS = (
    "creationGracePeriod",
    "tcpSynSent",
    "tcpEstablished",
    "tcpFinsSeen",
    "tcpResetSeen",
    "udpTimeout",
    "genericTimeout",
    "icmpTimeout",
)

FELIX_FIELDS: dict[str, FelixField] = {
    # --- scoping / dataplane driver -----------------------------------------------------------
    "nodeSelector": FelixField("str"),
    "useInternalDataplaneDriver": FelixField("bool"),
    "dataplaneDriver": FelixField("str"),
    "dataplaneWatchdogTimeout": FelixField("duration"),  # deprecated
    "ipv6Support": FelixField("bool"),
    # --- refresh intervals / iptables ---------------------------------------------------------
    "routeRefreshInterval": FelixField("duration", pattern=_DURATION),
    "interfaceRefreshInterval": FelixField("duration", pattern=_DURATION),
    "iptablesRefreshInterval": FelixField("duration", pattern=_DURATION),
    "iptablesPostWriteCheckInterval": FelixField("duration", pattern=_DURATION),
    "iptablesLockProbeInterval": FelixField("duration", pattern=_DURATION),
    "featureDetectOverride": FelixField(
        "str",
        pattern=r"([a-zA-Z0-9_-]+=(true|false|),)*([a-zA-Z0-9_-]+=(true|false|))?",
    ),
    "featureGates": FelixField(
        "str",
        pattern=r"([a-zA-Z0-9_-]+=([^=]+),)*([a-zA-Z0-9_-]+=([^=]+))?",
    ),
    "ipsetsRefreshInterval": FelixField("duration", pattern=_DURATION),
    "maxIpsetSize": FelixField("int"),
    "iptablesBackend": FelixField(
        "str", choices=("Legacy", "NFT", "Auto"), pattern=r"(?i)(Auto|Legacy|NFT)?"
    ),
    "xdpRefreshInterval": FelixField("duration", pattern=_DURATION),
    "netlinkTimeout": FelixField("duration", pattern=_DURATION),
    # --- OpenStack / interfaces ---------------------------------------------------------------
    "metadataAddr": FelixField("str"),
    "metadataPort": FelixField("int"),
    "openstackRegion": FelixField("str"),
    "interfacePrefix": FelixField("str"),
    "interfaceExclude": FelixField("str"),
    # --- chain hooking and policy verdict actions ---------------------------------------------
    "chainInsertMode": FelixField(
        "str", choices=("Insert", "Append"), pattern=r"(?i)(Insert|Append)?"
    ),
    "defaultEndpointToHostAction": FelixField(
        "str", choices=("Drop", "Accept", "Return"), pattern=r"(?i)(Drop|Accept|Return)?"
    ),
    "iptablesFilterAllowAction": FelixField(
        "str", choices=_ACCEPT_RETURN, pattern=_ACCEPT_RETURN_PATTERN
    ),
    "iptablesMangleAllowAction": FelixField(
        "str", choices=_ACCEPT_RETURN, pattern=_ACCEPT_RETURN_PATTERN
    ),
    "iptablesFilterDenyAction": FelixField(
        "str", choices=_DROP_REJECT, pattern=_DROP_REJECT_PATTERN
    ),
    # --- logging ------------------------------------------------------------------------------
    "logPrefix": FelixField("str", pattern=r"([a-zA-Z0-9%: /_-])*"),
    "logActionRateLimit": FelixField("str", pattern=r"[1-9]\d{0,3}/(?:second|minute|hour|day)"),
    "logActionRateLimitBurst": FelixField("int", minimum=0, maximum=9999),
    "logFilePath": FelixField("str"),
    "logSeverityFile": FelixField("str", choices=_LOG_LEVELS, pattern=_LOG_LEVEL_PATTERN),
    "logSeverityScreen": FelixField("str", choices=_LOG_LEVELS, pattern=_LOG_LEVEL_PATTERN),
    "logSeveritySys": FelixField("str", choices=_LOG_LEVELS, pattern=_LOG_LEVEL_PATTERN),
    "logDebugFilenameRegex": FelixField("str"),  # must compile as a regexp
    # --- IPIP / VXLAN -------------------------------------------------------------------------
    "ipipEnabled": FelixField("bool"),
    "ipipMTU": FelixField("int"),
    "vxlanEnabled": FelixField("bool"),
    "vxlanMTU": FelixField("int"),
    "vxlanMTUV6": FelixField("int"),
    "vxlanPort": FelixField("int"),
    "vxlanVNI": FelixField("int"),
    "allowVXLANPacketsFromWorkloads": FelixField("bool"),
    "allowIPIPPacketsFromWorkloads": FelixField("bool"),
    # --- status reporting ---------------------------------------------------------------------
    "reportingInterval": FelixField("duration", pattern=_DURATION),
    "reportingTTL": FelixField("duration", pattern=_DURATION),
    "endpointReportingEnabled": FelixField("bool"),
    "endpointReportingDelay": FelixField("duration", pattern=_DURATION),
    "endpointStatusPathPrefix": FelixField("str"),
    "iptablesMarkMask": FelixField("int", minimum=0, maximum=_UINT32_MAX),
    "disableConntrackInvalidCheck": FelixField("bool"),
    # --- health -------------------------------------------------------------------------------
    "healthEnabled": FelixField("bool"),
    "healthHost": FelixField("str"),
    "healthPort": FelixField("int"),
    "healthTimeoutOverrides": FelixField("object_list", keys=("name", "timeout")),
    # --- Prometheus ---------------------------------------------------------------------------
    "prometheusMetricsEnabled": FelixField("bool"),
    "prometheusMetricsHost": FelixField("str", pattern=r"[a-zA-Z0-9:._+-]{1,64}"),
    "prometheusMetricsPort": FelixField("int"),
    "prometheusGoMetricsEnabled": FelixField("bool"),
    "prometheusProcessMetricsEnabled": FelixField("bool"),
    "prometheusWireGuardMetricsEnabled": FelixField("bool"),
    "prometheusMetricsCAFile": FelixField("str"),
    "prometheusMetricsCertFile": FelixField("str"),
    "prometheusMetricsKeyFile": FelixField("str"),
    "prometheusMetricsClientAuth": FelixField(
        "str",
        choices=(
            "RequireAndVerifyClientCert",
            "RequireAnyClientCert",
            "VerifyClientCertIfGiven",
            "NoClientCert",
        ),
    ),
    # --- failsafe ports / node ports ----------------------------------------------------------
    "failsafeInboundHostPorts": FelixField("proto_port_list", keys=_PROTO_PORT_KEYS),
    "failsafeOutboundHostPorts": FelixField("proto_port_list", keys=_PROTO_PORT_KEYS),
    "kubeNodePortRanges": FelixField("port_list"),  # at most 7 items
    "policySyncPathPrefix": FelixField("str"),
    # --- usage reporting ----------------------------------------------------------------------
    "usageReportingEnabled": FelixField("bool"),
    "usageReportingInitialDelay": FelixField("duration", pattern=_DURATION),
    "usageReportingInterval": FelixField("duration", pattern=_DURATION),
    # --- NAT and routes -----------------------------------------------------------------------
    "natPortRange": FelixField("int_or_str", pattern=_PORT_OR_RANGE, minimum=0, maximum=65535),
    "natOutgoingAddress": FelixField("str"),  # IPv4 address
    "natOutgoingExclusions": FelixField("str", choices=("IPPoolsOnly", "IPPoolsAndHostIPs")),
    "deviceRouteSourceAddress": FelixField("str"),  # IPv4 address
    "deviceRouteSourceAddressIPv6": FelixField("str"),  # IPv6 address
    "deviceRouteProtocol": FelixField("int"),
    "removeExternalRoutes": FelixField("bool"),
    # EnabledIPIPOnly/EnabledNoEncapOnly, Netkit: projectcalico/calico 87c15906f20c.
    "programClusterRoutes": FelixField(
        "str", choices=(*_ENABLED_DISABLED, "EnabledIPIPOnly", "EnabledNoEncapOnly")
    ),
    "ipForwarding": FelixField("str", choices=_ENABLED_DISABLED),
    "externalNodesList": FelixField("str_list", item_kind="cidr"),
    # --- debug --------------------------------------------------------------------------------
    "debugMemoryProfilePath": FelixField("str"),
    "debugDisableLogDropping": FelixField("bool"),
    "debugSimulateCalcGraphHangAfter": FelixField("duration", pattern=_DURATION),
    "debugSimulateDataplaneHangAfter": FelixField("duration", pattern=_DURATION),
    "debugSimulateDataplaneApplyDelay": FelixField("duration", pattern=_DURATION),
    "debugHost": FelixField("str"),
    "debugPort": FelixField("int", minimum=0, maximum=65535),
    "iptablesNATOutgoingInterfaceFilter": FelixField("str", pattern=_IFACE_FILTER),
    "sidecarAccelerationEnabled": FelixField("bool"),
    # --- XDP ----------------------------------------------------------------------------------
    "xdpEnabled": FelixField("bool"),
    "genericXDPEnabled": FelixField("bool"),
    # --- nftables -----------------------------------------------------------------------------
    "nftablesMode": FelixField("str", choices=("Disabled", "Enabled", "Auto")),
    "nftablesRefreshInterval": FelixField("duration"),
    "nftablesFilterAllowAction": FelixField(
        "str", choices=_ACCEPT_RETURN, pattern=_ACCEPT_RETURN_PATTERN
    ),
    "nftablesMangleAllowAction": FelixField(
        "str", choices=_ACCEPT_RETURN, pattern=_ACCEPT_RETURN_PATTERN
    ),
    "nftablesFilterDenyAction": FelixField(
        "str", choices=_DROP_REJECT, pattern=_DROP_REJECT_PATTERN
    ),
    "nftablesMarkMask": FelixField("int", minimum=0, maximum=_UINT32_MAX),
    # Newer than the snapshot above: projectcalico/calico 87c15906f20c4ca1fda55af92295e7678b0cc0b2.
    "nftablesFlowTableOffload": FelixField("str", choices=("All", "Disabled")),
    "nftablesFlowTableDataIfacePattern": FelixField("str"),  # must compile as a regexp
    # --- eBPF dataplane -----------------------------------------------------------------------
    "bpfEnabled": FelixField("bool"),
    "bpfOverlayHostSourceIP": FelixField("str", choices=("TunnelAddress", "HostAddress")),
    "bpfDisableUnprivileged": FelixField("bool"),
    "bpfJITHardening": FelixField("str", choices=("Auto", "Strict")),
    "bpfLogLevel": FelixField(
        "str", choices=("Off", "Info", "Debug"), pattern=r"(?i)(Off|Info|Debug)?"
    ),
    "bpfConntrackLogLevel": FelixField("str", choices=("Off", "Debug")),
    "bpfConntrackMode": FelixField("str", choices=("Auto", "Userspace", "BPFProgram")),
    "bpfConntrackTimeouts": FelixField(
        "object", keys=_CT_TIMEOUT_KEYS, item_kind="str", pattern=_CT_TIMEOUT
    ),
    "bpfIPFragTimeout": FelixField("duration", pattern=_DURATION),
    "bpfLogFilters": FelixField("str_map"),  # keys: interface names, "all", "weps", "heps"
    "bpfCTLBLogFilter": FelixField("str"),
    "bpfDataIfacePattern": FelixField("str"),  # must compile as a regexp
    "bpfL3IfacePattern": FelixField("str"),  # must compile as a regexp
    "bpfConnectTimeLoadBalancingEnabled": FelixField("bool"),  # deprecated
    "bpfConnectTimeLoadBalancing": FelixField("str", choices=("TCP", "Enabled", "Disabled")),
    "bpfHostNetworkedNATWithoutCTLB": FelixField("str", choices=_ENABLED_DISABLED),
    "bpfExternalServiceMode": FelixField(
        "str", choices=("Tunnel", "DSR"), pattern=r"(?i)(Tunnel|DSR)?"
    ),
    "bpfDSROptoutCIDRs": FelixField("str_list", item_kind="cidr"),
    "bpfExtToServiceConnmark": FelixField("int", minimum=0, maximum=_UINT32_MAX),
    "bpfKubeProxyIptablesCleanupEnabled": FelixField("bool"),
    "bpfKubeProxyMinSyncPeriod": FelixField("duration", pattern=_DURATION),
    "bpfKubeProxyHealthzPort": FelixField("int", minimum=0, maximum=65535),
    "bpfPSNATPorts": FelixField("int_or_str", pattern=_PORT_OR_RANGE, minimum=0, maximum=65535),
    "bpfMapSizeNATFrontend": FelixField("int"),
    "bpfMapSizeNATBackend": FelixField("int"),
    "bpfMapSizeNATAffinity": FelixField("int"),
    "bpfMapSizeRoute": FelixField("int"),
    "bpfMapSizeConntrack": FelixField("int"),
    "bpfMapSizePerCpuConntrack": FelixField("int"),
    "bpfMapSizeConntrackScaling": FelixField(
        "str", choices=("Disabled", "DoubleIfFull"), pattern=r"(?i)(Disabled|DoubleIfFull)?"
    ),
    "bpfMapSizeConntrackCleanupQueue": FelixField("int", minimum=1),
    "bpfMapSizeIPSets": FelixField("int"),
    "bpfMapSizeIfState": FelixField("int"),
    "bpfHostConntrackBypass": FelixField("bool"),
    "bpfIPFragmentReassemblyEnabled": FelixField("bool"),
    "bpfEnforceRPF": FelixField(
        "str",
        choices=("Disabled", "Strict", "Loose"),
        pattern=r"(?i)(Disabled|Strict|Loose)?",
    ),
    "bpfPolicyDebugEnabled": FelixField("bool"),
    "bpfForceTrackPacketsFromIfaces": FelixField("str_list", pattern=_IFACE_FILTER),
    "bpfDisableGROForIfaces": FelixField("str"),  # must compile as a regexp
    "bpfExcludeCIDRsFromNAT": FelixField("str_list", item_kind="cidr"),
    "bpfExportBufferSizeMB": FelixField("int"),
    # --- Istio / cgroups ----------------------------------------------------------------------
    "istioAmbientMode": FelixField("str", choices=_ENABLED_DISABLED),
    "istioDSCPMark": FelixField("int_or_str", choices=_DSCP_NAMES, minimum=0, maximum=63),
    "cgroupV2Path": FelixField("str"),
    # --- flow logs / more eBPF ----------------------------------------------------------------
    "flowLogsPolicyEvaluationMode": FelixField("str", choices=("None", "Continuous")),
    # "L2Only" is deprecated (treated as "Enabled") but was valid up to v3.31.
    "bpfRedirectToPeer": FelixField("str", choices=("Enabled", "Disabled", "L2Only")),
    "bpfAttachType": FelixField("str", choices=("TC", "TCX", "Netkit")),
    "flowLogsFlushInterval": FelixField("duration", pattern=_DURATION),
    "flowLogsCollectorDebugTrace": FelixField("bool"),
    "flowLogsGoldmaneServer": FelixField("str"),
    "flowLogsLocalReporter": FelixField("str", choices=("Disabled", "Enabled")),
    "flowLogsSamplingRate": FelixField("int", minimum=1, maximum=1000000),
    "bpfProfiling": FelixField("str", choices=_ENABLED_DISABLED),
    # --- routing ------------------------------------------------------------------------------
    "routeSource": FelixField(
        "str", choices=("WorkloadIPs", "CalicoIPAM"), pattern=r"(?i)(WorkloadIPs|CalicoIPAM)?"
    ),
    "routeTableRanges": FelixField("object_list", keys=_RANGE_KEYS, item_kind="int"),
    "routeTableRange": FelixField("object", keys=_RANGE_KEYS, item_kind="int"),  # deprecated
    "routeSyncDisabled": FelixField("bool"),
    "ipv4NormalRoutePriority": FelixField("int", minimum=1, maximum=_ROUTE_PRIORITY_MAX),
    "ipv4ElevatedRoutePriority": FelixField("int", minimum=1, maximum=_ROUTE_PRIORITY_MAX),
    "ipv6NormalRoutePriority": FelixField("int", minimum=1, maximum=_ROUTE_PRIORITY_MAX),
    "ipv6ElevatedRoutePriority": FelixField("int", minimum=1, maximum=_ROUTE_PRIORITY_MAX),
    "liveMigrationRouteConvergenceTime": FelixField("duration", pattern=_DURATION),
    # --- WireGuard ----------------------------------------------------------------------------
    "wireguardEnabled": FelixField("bool"),
    "wireguardEnabledV6": FelixField("bool"),
    "wireguardThreadingEnabled": FelixField("bool"),
    "wireguardListeningPort": FelixField("int", minimum=1, maximum=65535),
    "wireguardListeningPortV6": FelixField("int", minimum=1, maximum=65535),
    "wireguardRoutingRulePriority": FelixField("int", minimum=1, maximum=32765),
    "wireguardInterfaceName": FelixField("str", pattern=_INTERFACE),
    "wireguardInterfaceNameV6": FelixField("str", pattern=_INTERFACE),
    "wireguardMTU": FelixField("int"),
    "wireguardMTUV6": FelixField("int"),
    "wireguardHostEncryptionEnabled": FelixField("bool"),
    "wireguardKeepAlive": FelixField("duration", pattern=_DURATION),
    # --- cloud / misc -------------------------------------------------------------------------
    "awsSrcDstCheck": FelixField("str", choices=("DoNothing", "Enable", "Disable")),
    "serviceLoopPrevention": FelixField(
        "str",
        choices=("Drop", "Reject", "Disabled"),
        pattern=r"(?i)(Drop|Reject|Disabled)?",
    ),
    "workloadSourceSpoofing": FelixField(
        "str", choices=("Disabled", "Any"), pattern=r"(?i)(Disabled|Any)?"
    ),
    "mtuIfacePattern": FelixField("str"),  # must compile as a regexp
    "floatingIPs": FelixField("str", choices=_ENABLED_DISABLED),
    "localSubnetL2Reachability": FelixField("str", choices=("Disabled", "PodsAndLoadBalancers")),
    "localSubnetL2ReachabilityRefreshInterval": FelixField("duration"),
    "windowsManageFirewallRules": FelixField("str", choices=_ENABLED_DISABLED),
    # --- Go runtime ---------------------------------------------------------------------------
    "goGCThreshold": FelixField("int", minimum=-1),
    "goMemoryLimitMB": FelixField("int", minimum=-1),
    "goMaxProcs": FelixField("int", minimum=-1),
    "requireMTUFile": FelixField("bool"),
    # --- Maglev -------------------------------------------------------------------------------
    "bpfMaglevMaxEndpointsPerService": FelixField("int", minimum=1, maximum=3000),
    "bpfMaglevMaxServices": FelixField("int", minimum=1, maximum=3000),
}

# Present in released FelixConfigurationSpec versions (through v3.30/v3.31) but no longer in the
# struct read above. Kept apart so callers can decide whether to accept them from old manifests.
REMOVED_FELIX_FIELDS: dict[str, FelixField] = {
    "iptablesLockFilePath": FelixField("str"),
    "iptablesLockTimeout": FelixField("duration", pattern=_DURATION),
    "bpfKubeProxyEndpointSlicesEnabled": FelixField("bool"),
}
