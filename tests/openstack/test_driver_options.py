"""What the driver's pure parts take from Neutron: the `[calico]` options as the driver
registers them with oslo.config, read back into CalicoOptions, and Neutron's API strings,
which `calico.openstack.decisions` spells out so that it imports no Neutron."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from neutron_lib import constants as n_const
from neutron_lib.api.definitions import portbindings
from oslo_config import cfg

from calico.openstack import decisions
from calico.openstack.decisions import options_from_conf
from calico.openstack.mech_driver import register_options
from calico.openstack.settings import CalicoOptions


def test_options_from_oslo_config(tmp_path: Path) -> None:
    conf = cfg.ConfigOpts()
    register_options(conf)
    ini = tmp_path / "ml2_conf.ini"
    ini.write_text(
        "[calico]\netcd_host = etcd.example\netcd_port = 12379\n"
        "etcd_ca_cert_file = /ca.pem\nopenstack_region = europe-1\n"
    )
    conf(["--config-file", str(ini)], project="neutron")
    options = options_from_conf(conf)
    assert options == CalicoOptions(
        etcd_host="etcd.example",
        etcd_port=12379,
        etcd_ca_cert_file="/ca.pem",
        openstack_region="europe-1",
    )
    assert options.region_string == "region-europe-1"
    assert options.etcd_config({}).endpoints == ("https://etcd.example:12379",)
    assert options.etcd_config({"ETCD_ENDPOINTS": "http://e2:2379"}).endpoints == (
        "http://e2:2379",
    )


def test_options_defaults_and_bad_region() -> None:
    conf = cfg.ConfigOpts()
    register_options(conf)
    conf([], project="neutron", default_config_files=[], default_config_dirs=[])
    assert options_from_conf(conf) == CalicoOptions()
    conf.set_override("openstack_region", "Bad_Region", group="calico")
    with pytest.raises(ValueError, match="openstack_region"):
        options_from_conf(conf)


def test_oslo_options_refuse_what_calico_py_does_not_do(tmp_path: Path) -> None:
    conf = cfg.ConfigOpts()
    register_options(conf)
    ini = tmp_path / "ml2_conf.ini"
    ini.write_text(
        "[calico]\netcd_scheme = https\netcd_timeout = 30\nstartup_resync = never\n"
        "num_port_status_threads = 2\netcd_compaction_period_mins = 0\n"
    )
    conf(["--config-file", str(ini)], project="neutron")
    options = options_from_conf(conf)
    assert (options.startup_resync, options.etcd_timeout) == ("never", 30)
    assert options.etcd_config({}).endpoints == ("https://127.0.0.1:2379",)
    for name, value, message in [
        ("etcd_username", "admin", "etcd_username 'admin': not supported"),
        ("max_egress_connections_per_port", 3, "max_egress_connections_per_port 3: not supported"),
        ("etcd_compaction_period_mins", -5, "etcd_compaction_period_mins -5: must not be"),
        ("fairy_gc_diagnostics", True, "fairy_gc_diagnostics True: not supported"),
    ]:
        conf.set_override(name, value, group="calico")
        with pytest.raises(ValueError, match=re.escape(f"[calico] {message}")):
            options_from_conf(conf)
        conf.clear_override(name, group="calico")


def test_decisions_spell_neutrons_strings() -> None:
    assert (decisions.HOST_ID, decisions.VIF_TYPE) == (portbindings.HOST_ID, portbindings.VIF_TYPE)
    assert decisions.VIF_TYPE_UNBOUND == portbindings.VIF_TYPE_UNBOUND
    assert set(decisions.VIF_UNPLUGGED_TYPES) == set(portbindings.VIF_UNPLUGGED_TYPES)
    assert decisions.VNIC_NORMAL == portbindings.VNIC_NORMAL
    assert (
        decisions.PORT_STATUS_ACTIVE,
        decisions.PORT_STATUS_DOWN,
        decisions.PORT_STATUS_ERROR,
    ) == (n_const.PORT_STATUS_ACTIVE, n_const.PORT_STATUS_DOWN, n_const.PORT_STATUS_ERROR)
    assert decisions.L2_AGENT_TOPIC == n_const.L2_AGENT_TOPIC
