"""Network config parsing with Calico's keys: defaults, every version, bad configs -> codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cni_harness import netconf

from calico.cni.config import (
    UNSUPPORTED,
    NetConf,
    determine_nodename,
    etcd_config,
    parse_netconf,
    workload_mtu,
)
from calico.cni.identity import identify
from calico.cni.spec import CniError, Code, Invocation


def parse(doc: Any) -> NetConf:
    return parse_netconf(json.dumps(doc).encode())


def code_of(doc: Any) -> int:
    with pytest.raises(CniError) as info:
        parse_netconf(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    return int(info.value.code)


def test_minimal_config_defaults() -> None:
    conf = parse({"name": "net1", "type": "calico", "ipam": {"type": "calico-ipam"}})
    assert conf.cni_version == "0.2.0"  # Calico's default when cniVersion is absent
    assert (conf.ipam.assign_ipv4, conf.ipam.assign_ipv6) == (True, False)
    assert conf.mtu == 0 and conf.policy_type == "" and conf.log_level == "info"
    assert conf.labels == () and conf.namespace is None and conf.nodename is None


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"])
def test_every_supported_version(version: str) -> None:
    assert parse(netconf(version)).cni_version == version


def test_all_calico_keys() -> None:
    conf = parse(
        netconf(
            "0.3.1",
            etcd_endpoints="https://10.0.0.1:2379",
            etcd_key_file="/k",
            etcd_cert_file="/c",
            etcd_ca_cert_file="/ca",
            nodename="node-7",
            nodename_file="/tmp/nn",
            mtu=1440,
            log_level="DEBUG",
            log_file_path="/var/log/calico/cni/cni.log",
            policy={"type": "k8s"},
            container_settings={"allow_ip_forwarding": True},
            datastore_type="etcdv3",
            capabilities={"portMappings": True},  # unknown keys are ignored
            ipam={
                "type": "calico-ipam",
                "assign_ipv4": "false",
                "assign_ipv6": "true",
                "ipv6_pools": ["2001:db8::/64", "pool6"],
            },
        )
    )
    assert conf.etcd_settings["ETCD_ENDPOINTS"] == "https://10.0.0.1:2379"
    assert conf.etcd_settings["ETCD_CA_CERT_FILE"] == "/ca"
    assert (conf.nodename, conf.nodename_file, conf.mtu) == ("node-7", "/tmp/nn", 1440)
    assert (conf.log_level, conf.policy_type, conf.allow_ip_forwarding) == ("debug", "k8s", True)
    assert (conf.ipam.assign_ipv4, conf.ipam.assign_ipv6) == (False, True)
    assert conf.ipam.ipv6_pools == ("2001:db8::/64", "pool6")


def test_labels_from_cni_args_and_mesos() -> None:
    conf = parse(
        netconf(
            args={
                "cni": {"labels": [{"key": "app", "value": "web"}]},
                "org.apache.mesos": {
                    "network_info": {
                        "labels": {
                            "labels": [
                                {"key": "tier", "value": "front"},
                                {"key": "projectcalico.org/namespace", "value": "team-a"},
                            ]
                        }
                    }
                },
            }
        )
    )
    assert conf.labels == (("app", "web"), ("tier", "front"))
    assert conf.namespace == "team-a"


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        (b"{not json", Code.DECODING_FAILURE),
        (b"\xff\xfe", Code.DECODING_FAILURE),
        (b"[" * 100_000, Code.DECODING_FAILURE),  # found by tests/fuzz: was a RecursionError
        ([1, 2], Code.DECODING_FAILURE),
        (netconf("1.1.0"), Code.INCOMPATIBLE_VERSION),
        (netconf("one"), Code.INCOMPATIBLE_VERSION),
        (netconf(cniVersion=1), Code.INVALID_CONFIG),
        (netconf(name=""), Code.INVALID_CONFIG),
        (netconf(name="my net"), Code.INVALID_CONFIG),
        (netconf(ipam=None), Code.INVALID_CONFIG),
        (netconf(ipam={"type": "host-local", "subnet": "10.0.0.0/24"}), Code.INVALID_CONFIG),
        (netconf(ipam="calico-ipam"), Code.INVALID_CONFIG),
        (netconf(ipam={"type": "calico-ipam", "assign_ipv4": "yes"}), Code.INVALID_CONFIG),
        (netconf(ipam={"type": "calico-ipam", "assign_ipv4": False}), Code.INVALID_CONFIG),
        (netconf(ipam={"type": "calico-ipam", "ipv4_pools": "a"}), Code.INVALID_CONFIG),
        (netconf(ipam={"type": "calico-ipam", "ipv4_pools": [""]}), Code.INVALID_CONFIG),
        (netconf(mtu="1500"), Code.INVALID_CONFIG),
        (netconf(mtu=True), Code.INVALID_CONFIG),
        (netconf(mtu=40), Code.INVALID_CONFIG),
        (netconf(etcd_endpoints=["http://a:2379"]), Code.INVALID_CONFIG),
        (netconf(datastore_type="kubernetes"), Code.INVALID_CONFIG),
        (netconf(policy="k8s"), Code.INVALID_CONFIG),
        (netconf(container_settings={"allow_ip_forwarding": "true"}), Code.INVALID_CONFIG),
        (netconf(args={"cni": {"labels": {"app": "web"}}}), Code.INVALID_CONFIG),
        (
            netconf(args={"cni": {"labels": [{"key": "bad key", "value": "x"}]}}),
            Code.INVALID_CONFIG,
        ),
        (netconf(args={"cni": {"labels": [{"key": "k", "value": "-bad-"}]}}), Code.INVALID_CONFIG),
    ],
)
def test_bad_configs(doc: Any, code: Code) -> None:
    assert code_of(doc) == code


def test_etcd_settings_override_the_environment() -> None:
    env = {"ETCD_ENDPOINTS": "http://env:2379", "ETCD_CA_CERT_FILE": "/env-ca"}
    assert etcd_config(parse(netconf()), env).endpoints == ("http://127.0.0.1:2379",)
    conf = parse(netconf(etcd_endpoints=None))
    config = etcd_config(conf, env)
    assert config.endpoints == ("http://env:2379",) and config.ca_cert_file == "/env-ca"
    assert etcd_config(parse(netconf(etcd_endpoints="unix:///run/etcd.sock")), {}).endpoints == (
        "unix:///run/etcd.sock",
    )
    with pytest.raises(CniError) as info:
        etcd_config(parse(netconf(etcd_endpoints="ftp://x")), {})
    assert info.value.code == Code.INVALID_CONFIG


def test_nodename_priority() -> None:
    files = {"/var/lib/calico/nodename": "from-default-file\n", "/etc/nn": "from-file"}
    read = files.get
    env = {"NODENAME": "from-env"}

    def node(conf: NetConf, environ: dict[str, str], read_text: Any = read) -> str:
        return determine_nodename(conf, environ, read_text, hostname=lambda: "from-hostname")

    assert node(parse(netconf(nodename="explicit", nodename_file="/etc/nn")), env) == "explicit"
    assert node(parse(netconf(nodename_file="/etc/nn")), env) == "from-file"
    assert node(parse(netconf()), env) == "from-default-file"
    assert node(parse(netconf()), env, read_text=lambda _p: None) == "from-env"
    assert node(parse(netconf()), {}, read_text=lambda _p: "  ") == "from-hostname"


def test_identity_uses_mesos_namespace_for_plain_cni_only() -> None:
    inv = Invocation("ADD", "c1", "/n", "eth0", {})
    assert identify(inv, "n1", "team-a").namespace == "team-a"
    k8s = Invocation("ADD", "c1", "/n", "eth0", {"K8S_POD_NAMESPACE": "ns", "K8S_POD_NAME": "p"})
    assert identify(k8s, "n1", "team-a").namespace == "ns"


def _nested(path: str, value: Any) -> dict[str, Any]:
    section, _, key = path.rpartition(".")
    doc: dict[str, Any] = {"name": "net1", "type": "calico", "ipam": {"type": "calico-ipam"}}
    if section:
        doc.setdefault(section, {})[key] = value
    else:
        doc[key] = value
    return doc


@pytest.mark.parametrize("path", sorted(UNSUPPORTED))
def test_calico_keys_without_behaviour_are_refused_with_their_path(path: str) -> None:
    value: Any = "x" if path not in ("num_queues", "vxlan_vni") else 2
    with pytest.raises(CniError) as err:
        parse(_nested(path, value))
    assert err.value.code == Code.INVALID_CONFIG
    assert str(err.value) == f"{path}: {json.dumps(value)} is not supported: {UNSUPPORTED[path]}"
    for off in (None, False, 0, "", [], {}):  # absent or off asks for nothing: accepted
        if path == "ipam.subnet" or not isinstance(off, (list, dict)):
            parse(_nested(path, off))


def test_refusals_read_as_an_operator_needs_them() -> None:
    with pytest.raises(
        CniError,
        match=r"^kubernetes\.kubeconfig: \"/etc/cni/net.d/calico-kubeconfig\" is not supported: calico-py has no Kubernetes API",
    ):
        parse(_nested("kubernetes.kubeconfig", "/etc/cni/net.d/calico-kubeconfig"))
    with pytest.raises(CniError, match=r"^feature_control\.floating_ips: true is not supported"):
        parse(_nested("feature_control.floating_ips", True))
    with pytest.raises(CniError, match=r"^policy\.type: 'calico' is not 'k8s' or empty"):
        parse(_nested("policy.type", "calico"))
    with pytest.raises(CniError, match=r"^log_level: 'verbose' is not one of trace, debug"):
        parse(_nested("log_level", "verbose"))
    assert parse(_nested("log_level", "WARN")).log_level == "warn"
    with pytest.raises(CniError, match=r"^ipam\.type: 'host-local' is not supported: use"):
        parse(_nested("ipam.type", "host-local"))
    with pytest.raises(CniError, match=r"^datastore_type: 'kubernetes' is not supported"):
        parse(_nested("datastore_type", "kubernetes"))
    for key in ("nodename_file_optional", "include_default_routes"):
        parse(_nested(key, True))
        assert code_of(_nested(key, "yes")) == Code.INVALID_CONFIG


def test_mtu_from_the_file_felix_writes(tmp_path: Path) -> None:
    mtu_file = tmp_path / "mtu"
    base = {"name": "net1", "type": "calico", "ipam": {"type": "calico-ipam"}}
    assert parse(base).mtu_file == "/var/lib/calico/mtu"
    conf = parse({**base, "mtu_file_path": str(mtu_file)})
    assert workload_mtu(conf) == 0  # no file: the kernel's default
    mtu_file.write_text("1450")  # Felix writes the number alone
    assert workload_mtu(conf) == 1450
    assert workload_mtu(parse({**base, "mtu_file_path": str(mtu_file), "mtu": 1300})) == 1300
    for bad in ("", "abc", "40", "1450.5"):
        mtu_file.write_text(bad)
        with pytest.raises(CniError, match="is not an MTU") as info:
            workload_mtu(conf)
        assert info.value.code == Code.IO_FAILURE


def test_require_mtu_file(tmp_path: Path) -> None:
    doc = {"name": "net1", "type": "calico", "ipam": {"type": "calico-ipam"},
           "require_mtu_file": True, "mtu_file_path": str(tmp_path / "mtu")}  # fmt: skip
    conf = parse(doc)
    with pytest.raises(CniError, match=r"failed to read MTU file .*does not exist") as info:
        workload_mtu(conf)
    assert info.value.code == Code.IO_FAILURE
    (tmp_path / "mtu").write_text("1410\n")
    assert workload_mtu(conf) == 1410
    assert code_of({**doc, "require_mtu_file": "yes"}) == Code.INVALID_CONFIG
