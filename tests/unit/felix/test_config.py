"""Felix configuration layering and validation."""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path

import pytest

from calico.dataplane.managers.vxlan import VXLANSettings
from calico.datastore.client import ResourceClient
from calico.datastore.memory import MemoryBackend
from calico.felix.config import (
    PARAMS,
    ConfigError,
    ProtoPort,
    build_config,
    file_layer,
    parse_seconds,
)
from calico.felix.daemon import dataplane_settings, datastore_specs, main, rules_config
from calico.model.support import FELIX, FELIX_LOCAL, FELIX_SUPPORTED, Status


def test_defaults_match_calico() -> None:
    cfg = build_config({"NODENAME": "host-1"})
    assert cfg.hostname == "host-1"
    assert cfg.interface_prefixes == ("cali",)
    assert cfg.default_endpoint_to_host_action == "Drop"
    assert (cfg.reporting_interval, cfg.reporting_ttl) == (30, 90)
    assert (
        ProtoPort("tcp", 22) in cfg.failsafe_inbound
        and ProtoPort("udp", 53) in cfg.failsafe_outbound
    )
    assert cfg.iptables_mark_mask == 0xFFFF0000
    assert cfg.run_dir == "/var/run/calico"


def test_layers_in_calico_order(tmp_path: Path) -> None:
    ini = tmp_path / "felix.cfg"
    ini.write_text("[global]\nReportingIntervalSecs = 20\nLogPrefix = from-file\n")
    cfg = build_config(
        {"NODENAME": "h", "FELIX_LOGPREFIX": "from-env", "CALICO_RUN_DIR": str(tmp_path)},
        file_layer(str(ini)),
        global_spec={
            "reportingInterval": "10s",
            "interfacePrefix": "tap",
            "reportingTTL": "1m",
            "logPrefix": "ds",
        },
        node_spec={"reportingTTL": "2m", "interfacePrefix": "tap,cali"},
    )
    assert cfg.reporting_interval == 20  # file beats datastore
    assert cfg.log_prefix == "from-env"  # env beats file
    assert cfg.reporting_ttl == 120  # node beats global
    assert cfg.interface_prefixes == ("tap", "cali")
    assert cfg.run_dir == str(tmp_path)


def test_env_names_are_case_insensitive_and_values_normalised() -> None:
    cfg = build_config(
        {
            "felix_defaultendpointtohostaction": "ACCEPT",
            "FELIX_IPV6SUPPORT": "false",
            "FELIX_FAILSAFEINBOUNDHOSTPORTS": "tcp:22,udp:10.0.0.0/8:68",
        }
    )
    assert cfg.default_endpoint_to_host_action == "Accept"
    assert cfg.ipv6_support is False
    assert cfg.failsafe_inbound == (ProtoPort("tcp", 22), ProtoPort("udp", 68, "10.0.0.0/8"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"FELIX_REPORTINGINTERVALSECS": "soon"},
            "environment: ReportingIntervalSecs: 'soon' is not a duration",
        ),
        (
            {"FELIX_DEFAULTENDPOINTTOHOSTACTION": "Maybe"},
            "DefaultEndpointToHostAction: 'Maybe' is not one of Drop, Accept, Return",
        ),
        ({"FELIX_FAILSAFEINBOUNDHOSTPORTS": "tcp"}, "FailsafeInboundHostPorts"),
        ({"FELIX_HEALTHPORT": "x"}, "HealthPort"),
        ({"FELIX_INTERFACEPREFIX": ","}, "InterfacePrefix: at least one interface prefix"),
    ],
)
def test_invalid_local_config_is_fatal_with_a_clear_message(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_config(env)


def test_invalid_datastore_value_falls_back() -> None:
    cfg = build_config(
        {}, global_spec={"defaultEndpointToHostAction": "Bogus", "reportingInterval": "45s"}
    )
    assert cfg.default_endpoint_to_host_action == "Drop"
    assert cfg.reporting_interval == 45


def test_datastore_failsafe_list() -> None:
    cfg = build_config(
        {},
        global_spec={
            "failsafeInboundHostPorts": [
                {"protocol": "TCP", "port": 22},
                {"protocol": "UDP", "port": 68, "net": "10.0.0.0/8"},
            ]
        },
    )
    assert cfg.failsafe_inbound == (ProtoPort("tcp", 22), ProtoPort("udp", 68, "10.0.0.0/8"))
    assert build_config({}, global_spec={"failsafeInboundHostPorts": []}).failsafe_inbound == ()


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        file_layer(str(tmp_path / "nope.cfg"))


def test_config_file_values_are_read_as_written(tmp_path: Path) -> None:
    """Found by tests/fuzz: a '%' was configparser interpolation syntax (a traceback)."""
    path = tmp_path / "felix.cfg"
    path.write_text("[global]\nLogPrefix = 100%calico\n")
    assert file_layer(str(path)) == {"logprefix": "100%calico"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[global]\nLogPrefix = \xff\n", "can't decode byte 0xff"),  # was UnicodeDecodeError
        (b"[global]\nLogPrefix = a\nLogPrefix = b\n", "option 'LogPrefix'"),
        (b"LogPrefix = a\n", "File contains no section headers"),
    ],
)
def test_unreadable_config_file_is_a_config_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "felix.cfg"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"config file {path}: .*{message}"):
        file_layer(str(path))


def test_config_file_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Is a directory"):
        file_layer(str(tmp_path))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("1.5", 1.5), ("90s", 90), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_seconds(text) == seconds


def test_invalid_datastore_felix_configuration_counts_as_absent() -> None:
    backend = MemoryBackend()
    prefix = "/calico/resources/v3/projectcalico.org/felixconfigurations/"

    def put(name: str, spec: dict[str, object]) -> None:
        meta = {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"}
        doc = {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration"}
        backend.put(prefix + name, json.dumps({**doc, "metadata": meta, "spec": spec}).encode())

    put("default", {"reportingInterval": "soon"})
    put("node.h1", {"logPrefix": "x"})
    assert datastore_specs(ResourceClient(backend), "h1") == ({}, {"logPrefix": "x"})
    # A refused value written by another tool is invalid data too: reported, not half-applied.
    put("node.h1", {"logPrefix": "x", "wireguardEnabled": True})
    assert datastore_specs(ResourceClient(backend), "h1") == ({}, {})


def test_nat_parameters_reach_the_rules_config() -> None:
    default = rules_config(build_config({"NODENAME": "h"}))
    assert (default.floating_ips, default.nat_outgoing_address, default.nat_port_range) == (
        False,
        None,
        None,
    )
    assert default.nat_outgoing_iface is None
    cfg = build_config(
        {"NODENAME": "h", "FELIX_NATOUTGOINGADDRESS": "198.18.0.1"},
        global_spec={
            "floatingIPs": "Enabled",
            "natPortRange": "32768:65535",
            "iptablesNATOutgoingInterfaceFilter": "eth0",
        },
    )
    rules = rules_config(cfg)
    assert rules.floating_ips and rules.nat_outgoing_address == "198.18.0.1"
    assert rules.nat_port_range == (32768, 65535) and rules.nat_outgoing_iface == "eth0"
    assert (
        rules_config(build_config({"NODENAME": "h", "FELIX_METADATAADDR": "None"})).metadata_addr
        is None
    )
    with pytest.raises(ConfigError, match="NATOutgoingAddress"):
        build_config({"NODENAME": "h", "FELIX_NATOUTGOINGADDRESS": "2001:db8::1"})
    with pytest.raises(ConfigError, match="NATPortRange"):
        build_config({"NODENAME": "h", "FELIX_NATPORTRANGE": "200:100"})


def test_the_fields_felix_reads_are_the_supported_ones() -> None:
    read = {p.field for p in PARAMS if p.field}
    assert read == set(FELIX_SUPPORTED)
    assert {f for f, s in FELIX.items() if s.status is Status.SUPPORTED} == read
    local = {p.name.lower() for p in PARAMS if not p.field}
    assert {n for n, s in FELIX_LOCAL.items() if s.status is Status.SUPPORTED} == local


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"FELIX_WIREGUARDENABLED": "true"},
            "environment variable FELIX_WIREGUARDENABLED: true is not supported by calico-py"
            " (WireGuard is not implemented) (FelixConfiguration wireguardEnabled)",
        ),
        ({"FELIX_BPFENABLED": "1"}, "FELIX_BPFENABLED: true is not supported"),
        ({"FELIX_IPINIPENABLED": "true"}, "IPIP is not implemented"),
        ({"FELIX_IPINIPMTU": "1400"}, "FELIX_IPINIPMTU: 1400 is not supported"),
        ({"FELIX_VXLANPORT": "70000"}, "environment: VXLANPort: 70000 is not within 1-65535"),
        ({"FELIX_NETLINKTIMEOUTSECS": "3"}, "FELIX_NETLINKTIMEOUTSECS"),
        ({"FELIX_FLOWLOGSGOLDMANESERVER": "x:1"}, "flow logs are not implemented"),
        ({"FELIX_ETCDENDPOINTS": "http://e:2379"}, "ETCD_ENDPOINTS"),
        ({"FELIX_DATASTORETYPE": "kubernetes"}, "only the etcdv3 datastore"),
        ({"FELIX_TYPHAADDR": "t:5473"}, "Typha is not implemented"),
        ({"FELIX_NOSUCHTHING": "1"}, "FELIX_NOSUCHTHING: not a Felix parameter calico-py knows"),
        # A supported field under a name Felix does not use is not quietly dropped either.
        ({"FELIX_LOGPREFIXSECS": "x"}, "FELIX_LOGPREFIXSECS: not a Felix parameter"),
        ({"FELIX_VXLANVNI": "many"}, "VXLANVNI: invalid literal"),
    ],
)
def test_refused_environment_stops_felix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config(env)


def test_environment_that_asks_for_nothing_is_accepted() -> None:
    cfg = build_config(
        {
            "NODENAME": "h",
            "FELIX_WIREGUARDENABLED": "false",
            "FELIX_BPFENABLED": "none",
            "FELIX_VXLANVNI": "4096",
            "FELIX_NETLINKTIMEOUTSECS": "10",
            "FELIX_DATASTORETYPE": "etcdv3",
            "FELIX_CLUSTERGUID": "abc",  # no-op: usage reporting only
            "FELIX_DEBUGPANICAFTER": "0",
            "FELIX_ISTIODSCPMARK": "23",
            "FELIX_BPFPSNATPORTS": "20000:29999",
            "FELIX_KUBENODEPORTRANGES": "30000:32767",
            "FELIX_USAGEREPORTINGENABLED": "true",  # no-op: calico-py never reports usage
            "FELIX_LOGSEVERITYSYS": "info",
            "FELIX_IPTABLESMANGLEALLOWACTION": "return",
            "FELIX_ALLOWVXLANPACKETSFROMWORKLOADS": "true",
            "FELIX_DISABLECONNTRACKINVALIDCHECK": "true",
        }
    )
    assert cfg.mangle_allow_action == "Return"
    rules = rules_config(cfg)
    assert rules.mangle_allow_action == "RETURN"
    assert (rules.allow_vxlan_from_workloads, rules.allow_ipip_from_workloads) == (True, False)
    assert rules.disable_conntrack_invalid is True


def test_config_file_keys_are_classified_too(tmp_path: Path) -> None:
    ini = tmp_path / "felix.cfg"
    ini.write_text("[global]\nLogPrefix = f\nWireguardEnabled = false\nBPFLogLevel = Off\n")
    assert file_layer(str(ini)) == {"logprefix": "f"}
    ini.write_text("[global]\nBPFEnabled = true\n")
    with pytest.raises(ConfigError, match=f"config file {ini}: BPFEnabled: true is not supported"):
        file_layer(str(ini))
    ini.write_text("[global]\nMetadataAdr = 10.0.0.1\n")
    with pytest.raises(ConfigError, match="MetadataAdr: not a Felix parameter calico-py knows"):
        file_layer(str(ini))
    ini.write_text("[other]\nLogPrefix = f\n")
    with pytest.raises(ConfigError, match=r"\[other\]: only \[global\] is read"):
        file_layer(str(ini))


def test_refresh_intervals_reach_the_dataplane() -> None:
    default = dataplane_settings(build_config({"NODENAME": "h"}))
    assert (default.interface_refresh, default.route_refresh) == (90, 90)
    cfg = build_config(
        {"NODENAME": "h", "FELIX_INTERFACEREFRESHINTERVAL": "15"},
        global_spec={"routeRefreshInterval": "1m", "ipsetsRefreshInterval": "0"},
    )
    settings = dataplane_settings(cfg)
    assert (settings.interface_refresh, settings.route_refresh) == (15, 60)
    assert settings.ipsets_refresh == 0


def test_felix_exits_at_start_naming_a_refused_variable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    env = {"NODENAME": "h", "ETCD_ENDPOINTS": "http://127.0.0.1:9", "FELIX_BPFENABLED": "true"}
    threshold = gc.get_threshold()  # main() tunes the collector for Felix's process
    request.addfinalizer(lambda: gc.set_threshold(*threshold))
    with pytest.raises(SystemExit) as exit_info:
        main({**env, "FELIX_CONFIGFILE": str(tmp_path / "absent.cfg")})
    assert exit_info.value.code == 2  # the missing file is reported first
    ini = tmp_path / "felix.cfg"
    ini.write_text("[global]\nLogPrefix = f\n")
    with pytest.raises(SystemExit) as exit_info:
        main({**env, "FELIX_CONFIGFILE": str(ini)})
    assert exit_info.value.code == 2
    assert caplog.records[-1].getMessage() == (
        "invalid configuration: environment variable FELIX_BPFENABLED: true is not supported"
        " by calico-py (the eBPF dataplane is not implemented; Felix programs iptables)"
        " (FelixConfiguration bpfEnabled)"
    )


def test_vxlan_parameters_reach_the_dataplane() -> None:
    default = dataplane_settings(build_config({"NODENAME": "h", "CALICO_RUN_DIR": "/run/h"}))
    assert default.hostname == "h" and default.rules.vxlan_port == 4789
    assert default.vxlan == VXLANSettings(None, 4096, 0, 0, "/var/lib/calico/mtu")  # auto
    cfg = build_config(
        {"NODENAME": "h", "FELIX_VXLANMTUV6": "1400", "FELIX_MTUFILEPATH": "/tmp/h-mtu"},
        global_spec={"vxlanEnabled": True, "vxlanPort": 8472, "vxlanVNI": 7, "vxlanMTU": 1410},
        node_spec={"vxlanEnabled": False},
    )
    settings = dataplane_settings(cfg)
    assert settings.vxlan == VXLANSettings(False, 7, 1410, 1400, "/tmp/h-mtu")
    assert settings.rules.vxlan_port == 8472
    assert build_config({"FELIX_VXLANENABLED": "true"}).vxlan_enabled is True
    assert build_config({"FELIX_VXLANENABLED": "none"}).vxlan_enabled is None
    with pytest.raises(ConfigError, match="VXLANVNI: 16777216 is not within 1-16777215"):
        build_config({"FELIX_VXLANVNI": str(2**24)})
