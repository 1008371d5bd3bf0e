"""EtcdConfig from the environment and from a calicoctl.cfg spec; gateway codec helpers."""

from __future__ import annotations

import pytest

from calico.datastore.api import DatastoreUnavailable, KeyNotFound
from calico.datastore.config import DEFAULT_ENDPOINT, EtcdConfig
from calico.datastore.etcd_gateway import GatewayError, decode_kv, error_from_body, key_range


def test_from_env_defaults() -> None:
    assert EtcdConfig.from_env({}) == EtcdConfig(endpoints=(DEFAULT_ENDPOINT,))


def test_from_env_reads_calico_variables() -> None:
    config = EtcdConfig.from_env(
        {
            "ETCD_ENDPOINTS": "https://10.0.0.1:2379, https://10.0.0.2:2379/,",
            "ETCD_CA_CERT_FILE": "/ca.pem",
            "ETCD_CERT_FILE": "/cert.pem",
            "ETCD_KEY_FILE": "/key.pem",
        }
    )
    assert config.endpoints == ("https://10.0.0.1:2379", "https://10.0.0.2:2379")
    assert (config.ca_cert_file, config.cert_file, config.key_file) == (
        "/ca.pem",
        "/cert.pem",
        "/key.pem",
    )


def test_from_env_legacy_scheme_and_authority() -> None:
    environ = {"ETCD_SCHEME": "https", "ETCD_AUTHORITY": "etcd.example:4001"}
    assert EtcdConfig.from_env(environ).endpoints == ("https://etcd.example:4001",)
    environ["ETCD_ENDPOINTS"] = "http://127.0.0.1:2379"  # ETCD_ENDPOINTS wins
    assert EtcdConfig.from_env(environ).endpoints == ("http://127.0.0.1:2379",)


@pytest.mark.parametrize(
    "endpoints",
    ["127.0.0.1:2379", "ftp://host:21", "http://:2379", "http://host:notaport", "http://h:1/v3"],
)
def test_malformed_endpoints_are_rejected(endpoints: str) -> None:
    with pytest.raises(ValueError, match="malformed endpoint"):
        EtcdConfig.from_env({"ETCD_ENDPOINTS": endpoints})


def test_cert_without_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="both cert and key"):
        EtcdConfig.from_env({"ETCD_CERT_FILE": "/cert.pem"})


def test_from_mapping_reads_calicoctl_spec() -> None:
    spec = {
        "datastoreType": "etcdv3",
        "etcdEndpoints": "https://10.0.0.1:2379,https://10.0.0.2:2379",
        "etcdCACertFile": "/ca.pem",
        "etcdCertFile": "/cert.pem",
        "etcdKeyFile": "/key.pem",
    }
    config = EtcdConfig.from_mapping(spec)
    assert config.endpoints == ("https://10.0.0.1:2379", "https://10.0.0.2:2379")
    assert config.key_file == "/key.pem"
    assert EtcdConfig.from_mapping({}).endpoints == (DEFAULT_ENDPOINT,)


@pytest.mark.parametrize(
    "spec",
    [{"etcdEndpoints": 2379}, {"etcdCACertFile": ["/ca"]}],
)
def test_from_mapping_rejects_bad_specs(spec: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="etcd config"):
        EtcdConfig.from_mapping(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"datastoreType": "kubernetes"},
            "spec.datastoreType: 'kubernetes' is not supported: calico-py has no Kubernetes datastore",
        ),
        (
            {"kubeconfig": "/root/.kube/config"},
            "spec.kubeconfig: not supported: calico-py has no Kubernetes datastore",
        ),
        ({"k8sAPIEndpoint": "https://k:6443"}, "spec.k8sAPIEndpoint: not supported"),
        ({"etcdUsername": "root"}, "spec.etcdUsername: not supported: etcd user authentication"),
        (
            {"etcdCACert": "-----BEGIN"},
            "spec.etcdCACert: not supported: inline PEM is not supported: use etcdCACertFile",
        ),
        ({"etcdDiscoverySrv": "example.com"}, "spec.etcdDiscoverySrv: not supported: no DNS SRV"),
        ({"etcdEndpoint": "http://x:2379"}, "spec.etcdEndpoint: unknown field"),
    ],
)
def test_calicoctl_config_keys_without_behaviour_are_refused(
    spec: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as err:
        EtcdConfig.from_mapping(spec)
    assert str(err.value).startswith(message), str(err.value)
    if "unknown" not in message:  # empty asks for nothing
        EtcdConfig.from_mapping({key: "" for key in spec})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATASTORE_TYPE": "kubernetes"}, "DATASTORE_TYPE: 'kubernetes' is not supported"),
        ({"ETCD_USERNAME": "root"}, "ETCD_USERNAME: not supported: etcd user authentication"),
        ({"ETCD_PASSWORD": "pw"}, "ETCD_PASSWORD: not supported"),
        (
            {"ETCD_DISCOVERY_SRV": "example.com"},
            "ETCD_DISCOVERY_SRV: not supported: no DNS SRV discovery: list the endpoints in ETCD_ENDPOINTS",
        ),
        (
            {"ETCD_CERT": "-----BEGIN"},
            "ETCD_CERT: not supported: inline PEM is not supported: use ETCD_CERT_FILE",
        ),
    ],
)
def test_datastore_variables_without_behaviour_are_refused(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError) as err:
        EtcdConfig.from_env(env)
    assert str(err.value).startswith(message), str(err.value)
    assert EtcdConfig.from_env({"DATASTORE_TYPE": "etcdv3", "KUBECONFIG": "/k"}).endpoints


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="request_timeout"):
        EtcdConfig(request_timeout=0)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("/a/b", (b"/a/b", b"/a/c")),
        ("", (b"\0", b"\0")),
        ("/a\udcff", (b"/a\xff", b"/b")),  # a trailing 0xff byte carries into the previous one
        ("\udcff", (b"\xff", b"\0")),
    ],
)
def test_key_range(prefix: str, expected: tuple[bytes, bytes]) -> None:
    assert key_range(prefix) == expected


def test_decode_kv_fills_omitted_defaults() -> None:
    kv = decode_kv({"key": "L2s=", "mod_revision": "7"})
    assert (kv.key, kv.value, kv.mod_revision, kv.create_revision, kv.lease) == ("/k", b"", 7, 0, 0)


def test_error_mapping() -> None:
    assert isinstance(error_from_body({"code": 5, "message": "lease not found"}), KeyNotFound)
    assert isinstance(error_from_body({"error": {"grpc_code": 14}}), DatastoreUnavailable)
    error = error_from_body({"code": 11, "message": "mvcc: required revision has been compacted"})
    assert isinstance(error, GatewayError)
    assert error.compacted


def test_a_closing_etcd_is_unavailable_not_a_request_error() -> None:
    assert isinstance(
        error_from_body({"code": 1, "message": "client connection is closing"}),
        DatastoreUnavailable,
    )
