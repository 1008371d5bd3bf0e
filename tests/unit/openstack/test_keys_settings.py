"""Names, keys and the [calico] options shared by the Neutron driver and the DHCP agent."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from calico.model.status_keys import region_string as region_string_of
from calico.openstack import keys
from calico.openstack.settings import (
    OPTIONS,
    CalicoOptions,
    DhcpAgentOptions,
    read_config_files,
    read_dhcp_agent_options,
)


@pytest.mark.parametrize(
    ("region", "region_string", "namespace"),
    [
        (None, "no-region", "openstack"),
        ("", "no-region", "openstack"),
        ("europe-1", "region-europe-1", "openstack-region-europe-1"),
    ],
)
def test_region_strings_and_namespaces(
    region: str | None, region_string: str, namespace: str
) -> None:
    assert region_string_of(region) == region_string
    assert keys.endpoint_namespace(region) == namespace


@pytest.mark.parametrize("region", ["Europe", "-edge", "edge-", "a_b", "x" * 47])
def test_invalid_regions_are_named(region: str) -> None:
    with pytest.raises(ValueError, match="openstack_region"):
        region_string_of(region)


def test_names_follow_networking_calico() -> None:
    port = "0123abcd-4567-89ef-0123-456789abcdef"
    assert keys.interface_name(port) == "tap0123abcd-45"
    assert keys.endpoint_name("compute-1", "vm-9", "p1") == "compute--1-openstack-vm--9-p1"
    assert keys.policy_name("sg1") == "ossg.default.sg1"
    assert keys.sg_label("sg1") == "sg.projectcalico.org/openstack-sg1"
    assert keys.subnet_key("no-region", "s1") == "/calico/dhcp/v2/no-region/subnet/s1"
    assert keys.election_key("region-r1") == "/calico/openstack/v2/region-r1/neutron_election"


def test_etcd_host_and_port_become_the_endpoint() -> None:
    opts = CalicoOptions(etcd_host="10.0.0.5", etcd_port=4001)
    assert opts.etcd_config({}).endpoints == ("http://10.0.0.5:4001",)
    v6 = CalicoOptions(etcd_host="2001:db8::5")
    assert v6.etcd_config({}).endpoints == ("http://[2001:db8::5]:2379",)


def test_tls_options_switch_to_https_and_are_passed_on() -> None:
    opts = CalicoOptions(
        etcd_cert_file="/c.pem", etcd_key_file="/k.pem", etcd_ca_cert_file="/ca.pem"
    )
    config = opts.etcd_config({})
    assert config.endpoints == ("https://127.0.0.1:2379",)
    assert (config.cert_file, config.key_file, config.ca_cert_file) == (
        "/c.pem",
        "/k.pem",
        "/ca.pem",
    )


def test_etcd_endpoints_environment_overrides_host_and_port() -> None:
    opts = CalicoOptions(etcd_host="10.0.0.5")
    config = opts.etcd_config({"ETCD_ENDPOINTS": "http://198.18.0.1:2379,unix:///run/e.sock"})
    assert config.endpoints == ("http://198.18.0.1:2379", "unix:///run/e.sock")


def test_a_cert_without_key_is_a_config_error() -> None:
    with pytest.raises(ValueError, match=r"\[calico\] etcd options: .*both cert and key"):
        CalicoOptions(etcd_cert_file="/c.pem").etcd_config({})


def test_config_files_later_overrides_earlier_and_other_sections_ignored(tmp_path: Path) -> None:
    neutron = tmp_path / "neutron.conf"
    neutron.write_text(
        "[DEFAULT]\ncore_plugin = ml2\n[calico]\netcd_host = 198.18.0.9\netcd_port = 2380\n"
    )
    ml2 = tmp_path / "ml2_conf.ini"
    ml2.write_text("[calico]\netcd_port = 2379\nopenstack_region = r1\nunrelated = x\n")
    opts = read_config_files([str(neutron), str(ml2)])
    assert opts == CalicoOptions(etcd_host="198.18.0.9", etcd_port=2379, openstack_region="r1")
    assert opts.region_string == "region-r1"
    assert opts.namespace == "openstack-region-r1"


def test_no_calico_section_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "neutron.conf"
    path.write_text("[DEFAULT]\nverbose = true\n")
    assert read_config_files([str(path)]) == CalicoOptions()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[calico]\netcd_port = twenty\n", r"etcd_port 'twenty': not an integer"),
        ("[calico]\netcd_port = 70000\n", r"etcd_port 70000: not a TCP port number"),
        ("[calico]\nopenstack_region = Bad_Region\n", r"openstack_region 'Bad_Region'"),
        ("not an ini file\n", r"config file .*neutron.conf"),
    ],
)
def test_bad_config_files_name_the_option(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "neutron.conf"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_config_files([str(path)])


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot read config file .*absent\.conf"):
        read_config_files([str(tmp_path / "absent.conf")])


def test_every_option_is_a_field() -> None:
    assert [o.name for o in OPTIONS if o.section == "calico"] == [
        f.name for f in fields(CalicoOptions)
    ]
    assert [o.name for o in OPTIONS if o.section == "DEFAULT"] == [
        f.name for f in fields(DhcpAgentOptions)
    ]
    for spec in OPTIONS:  # the table's defaults are the dataclasses'
        dataclass = CalicoOptions if spec.section == "calico" else DhcpAgentOptions
        assert getattr(dataclass(), spec.name) == spec.default, spec.name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("etcd_username = admin", r"\[calico\] etcd_username 'admin': not supported: etcd user"),
        ("etcd_password = s3cret", r"\[calico\] etcd_password 's3cret': not supported"),
        (
            "max_ingress_connections_per_port = 10",
            r"max_ingress_connections_per_port 10: not supported: QoS \(WorkloadEndpoint qosControls\)",
        ),
        ("ingress_burst_bits = 80000", r"ingress_burst_bits 80000: not supported: QoS"),
        ("egress_burst_bits = 1", r"egress_burst_bits 1: not supported: QoS"),
        ("ingress_minburst_bytes = 1500", r"ingress_minburst_bytes 1500: not supported: QoS"),
        ("egress_minburst_bytes = 1500", r"egress_minburst_bytes 1500: not supported: QoS"),
        ("ingress_burst_packets = 7", r"ingress_burst_packets 7: not supported: QoS"),
        ("egress_burst_packets = 6", r"egress_burst_packets 6: not supported: QoS"),
        (
            "max_egress_connections_per_port = 5",
            r"max_egress_connections_per_port 5: not supported",
        ),
        ("etcd_compaction_period_mins = -1", r"etcd_compaction_period_mins -1: must not be"),
        ("fairy_gc_diagnostics = true", r"fairy_gc_diagnostics True: not supported"),
        ("fairy_gc_diagnostics = perhaps", r"fairy_gc_diagnostics 'perhaps': not a boolean"),
        (
            "startup_resync_inject_per_item_delay_ms = 5",
            r"startup_resync_inject_per_item_delay_ms 5: not supported",
        ),
        ("etcd_scheme = gopher", r"etcd_scheme 'gopher': not http or https"),
        ("startup_resync = sometimes", r"startup_resync 'sometimes': not 'always' or 'never'"),
        ("etcd_timeout = 0", r"etcd_timeout 0: not a positive number"),
        ("etcd_timeout = soon", r"etcd_timeout 'soon': not an integer"),
        ("num_port_status_threads = 0", r"num_port_status_threads 0: not positive"),
    ],
)
def test_upstream_options_without_behaviour_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "neutron.conf"
    path.write_text(f"[calico]\n{text}\n")
    with pytest.raises(ValueError, match=message):
        read_config_files([str(path)])


def test_upstream_options_that_work_or_ask_for_nothing(tmp_path: Path) -> None:
    path = tmp_path / "neutron.conf"
    path.write_text(
        "[calico]\netcd_scheme = https\netcd_timeout = 60\nmax_ingress_connections_per_port = 0\n"
        "etcd_compaction_period_mins = 10\netcd_compaction_min_revisions = 500\n"
        "num_port_status_threads = 8\nproject_name_cache_max = 10\nstartup_resync = never\n"
        "resync_interval_secs = 30\nfairy_gc_diagnostics = false\n"
        # networking-calico's QoS burst defaults, and 0, which means the default there
        "ingress_burst_bits = 4294967296\negress_burst_bits = 0\ningress_burst_packets = 5\n"
        "egress_burst_packets = 0\ningress_minburst_bytes = 0\n"
    )
    opts = read_config_files([str(path)])
    assert (opts.startup_resync, opts.etcd_compaction_period_mins) == ("never", 10)
    assert opts.etcd_compaction_min_revisions == 500
    config = opts.etcd_config({})
    assert config.endpoints == ("https://127.0.0.1:2379",) and config.request_timeout == 60.0


def test_dhcp_agent_options_from_default_sections(tmp_path: Path) -> None:
    neutron = tmp_path / "neutron.conf"
    neutron.write_text(
        "[DEFAULT]\nhost = compute-7\ndhcp_lease_duration = 600\ndns_domain = example.org.\n"
        "core_plugin = ml2\n[calico]\netcd_port = 12379\n"
    )
    agent = tmp_path / "dhcp_agent.ini"
    agent.write_text(
        "[DEFAULT]\ndhcp_lease_duration = -1\ndhcp_broadcast_reply = true\n"
        "dnsmasq_lease_max = 100\ndnsmasq_config_file = /etc/dnsmasq-extra.conf\n"
        "dhcp_renewal_time = 300\ndhcp_rebinding_time = 500\n"
        "interface_driver = openvswitch\ndhcp_driver = x\nresync_interval = 30\n"
        "enable_isolated_metadata = false\ndnsmasq_dns_servers =\n"
    )
    options = read_dhcp_agent_options([str(neutron), str(agent)])
    assert options == DhcpAgentOptions(
        host="compute-7",
        dhcp_lease_duration=-1,
        dns_domain="example.org.",
        dhcp_broadcast_reply=True,
        dnsmasq_lease_max=100,
        dnsmasq_config_file="/etc/dnsmasq-extra.conf",
        dhcp_renewal_time=300,
        dhcp_rebinding_time=500,
        interface_driver="openvswitch",
        dhcp_driver="x",
        resync_interval=30,
    )
    assert options.domain == "example.org"
    assert DhcpAgentOptions(dhcp_domain="old.example").domain == "old.example"
    assert DhcpAgentOptions().domain is None
    assert read_config_files([str(neutron), str(agent)]).etcd_port == 12379


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "dnsmasq_dns_servers = 8.8.8.8, 1.1.1.1",
            r"\[DEFAULT\] dnsmasq_dns_servers \('8.8.8.8', '1.1.1.1'\): not supported: calico-dhcp-agent's dnsmasq answers no DNS",
        ),
        ("dnsmasq_local_resolv = true", r"dnsmasq_local_resolv True: not supported: .* no DNS"),
        ("dnsmasq_txt_record = v=1", r"dnsmasq_txt_record 'v=1': not supported"),
        ("dnsmasq_enable_addr6_list = true", r"dnsmasq_enable_addr6_list True: not supported"),
        (
            "dnsmasq_base_log_dir = /var/log/dnsmasq",
            r"dnsmasq_base_log_dir '/var/log/dnsmasq': not supported",
        ),
        (
            "dhcp_confs = /var/lib/neutron/dhcp",
            r"dhcp_confs '/var/lib/neutron/dhcp': not supported: .*CALICO_RUN_DIR",
        ),
        (
            "enable_isolated_metadata = true",
            r"enable_isolated_metadata True: not supported: .* no metadata",
        ),
        ("force_metadata = true", r"force_metadata True: not supported: .* no metadata"),
        ("enable_metadata_network = true", r"enable_metadata_network True: not supported"),
        (
            "dhcp_lease_duration = 60",
            r"\[DEFAULT\] dhcp_lease_duration 60: not -1 \(infinite\) or at least 120",
        ),
        ("dhcp_lease_duration = -2", r"dhcp_lease_duration -2: not -1"),
        ("dhcp_lease_duration = long", r"\[DEFAULT\] dhcp_lease_duration 'long': not an integer"),
        ("dns_domain = bad domain", r"dns_domain 'bad domain': not a domain name"),
        ("dhcp_domain = a,b", r"dhcp_domain 'a,b': not a domain name"),
        ("dnsmasq_lease_max = 0", r"dnsmasq_lease_max 0: not positive"),
        ("dhcp_renewal_time = -1", r"dhcp_renewal_time -1: must not be negative"),
        (
            "dhcp_broadcast_reply = maybe",
            r"\[DEFAULT\] dhcp_broadcast_reply 'maybe': not a boolean",
        ),
    ],
)
def test_dhcp_agent_options_without_behaviour_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "dhcp_agent.ini"
    path.write_text(f"[DEFAULT]\n{text}\n")
    with pytest.raises(ValueError, match=message):
        read_dhcp_agent_options([str(path)])
    read_config_files([str(path)])  # the [calico] reader does not look at them
