"""The driver inside Neutron against etcd with --client-cert-auth (issue #13's TLS check for
the one component that is not an executable of ours): with the right [calico] etcd_* files a
port reaches etcd; with the wrong CA, no client certificate or one of another CA the driver
says so in one line at start-up (naming the file), Neutron's plugin and API calls carry on as
when etcd is down, and etcd's revision does not move."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from neutron_harness import HOST1, CalicoMl2TestCase
from oslo_config import cfg

from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.lab.pki import Pki, local_pair
from calico.openstack import keys
from calico.testing.etcd_server import EtcdServer, EtcdTls

pytestmark = [pytest.mark.openstack, pytest.mark.timeout(120)]

START_UP = "Calico: cannot use etcd, "


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pki, Pki]:
    """etcd's CA (server and client certificates) and a CA that signed nothing etcd knows."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl needed")
    work = tmp_path_factory.mktemp("pki")
    return local_pair(work)


@pytest.fixture(autouse=True)
def calico_etcd(
    request: pytest.FixtureRequest, pkis: tuple[Pki, Pki], caplog: pytest.LogCaptureFixture
) -> Iterator[EtcdServer]:
    """Replaces conftest's plain etcd with one that requires a client certificate."""
    if shutil.which("etcd") is None:
        pytest.skip("etcd binary not found (install etcd-server)")
    ours, other = pkis
    tls = EtcdTls(ours.ca_file, ours.cert("etcd"), ours.key("etcd"), ours.cert("client"),
                  ours.key("client"))  # fmt: skip
    with EtcdServer(tls=tls) as server:
        request.instance.etcd = server
        request.instance.pki, request.instance.other = ours, other
        request.instance.caplog = caplog
        yield server


class _TlsCase(CalicoMl2TestCase):
    case = "good"
    pki: Pki
    other: Pki
    caplog: pytest.LogCaptureFixture

    def files(self) -> tuple[Path, Path | None, Path | None]:
        ca = self.other.ca_file if self.case == "wrong CA" else self.pki.ca_file
        if self.case == "no client cert":
            return ca, None, None
        signer = self.other if self.case == "client cert of another CA" else self.pki
        return ca, signer.cert("client"), signer.key("client")

    def setup_config(self) -> None:
        super().setup_config()
        ca, cert, key = self.files()
        cfg.CONF.set_override("etcd_ca_cert_file", str(ca), group="calico")
        if cert is not None and key is not None:
            cfg.CONF.set_override("etcd_cert_file", str(cert), group="calico")
            cfg.CONF.set_override("etcd_key_file", str(key), group="calico")

    def setUp(self) -> None:
        # Our own view of etcd, through the right files, from before the driver starts.
        good = EtcdConfig(endpoints=(self.etcd.endpoint,), ca_cert_file=str(self.pki.ca_file),
                          cert_file=str(self.pki.cert("client")),
                          key_file=str(self.pki.key("client")))  # fmt: skip
        checker = EtcdBackend(good)
        self.addCleanup(checker.close)
        self.revision_before = checker.list("/calico/").revision
        super().setUp()
        self.backend = checker

    def errors(self, text: str) -> list[str]:
        return [r.getMessage() for r in self.caplog.records if text in r.getMessage()]

    def create_port(self) -> str:
        """A network, subnet and bound VM port through Neutron's API (which must succeed)."""
        self.felix_heartbeat(HOST1, first=True)  # (agent state is Neutron's DB, not etcd)
        net = self.make_net()
        self.make_subnet(net)
        port = self.make_vm_port(net, device_id="vm-tls")
        return str(port["id"])


class TestGoodFiles(_TlsCase):
    def test_port_reaches_etcd(self) -> None:
        port_id = self.create_port()
        wep = self.etcd_json(self.wep_key(HOST1, "vm-tls", port_id))
        assert wep["spec"]["endpoint"] == port_id
        assert self.errors("TLS:") == []


class _BadFiles(_TlsCase):
    expected = ""

    def check_refused(self) -> None:
        # One line at start-up names the problem and the file.
        (line,) = self.errors(START_UP)
        assert self.expected in line, line
        # The API calls still work; each failed write says the same, and nothing was written.
        port_id = self.create_port()
        endpoint = keys.endpoint_name(HOST1, "vm-tls", port_id)
        assert any(f"writing endpoint {endpoint} failed" in e for e in self.errors(self.expected))
        assert self.backend.list("/calico/").revision == self.revision_before
        assert self.weps() == {}


class TestWrongCa(_BadFiles):
    case = "wrong CA"

    def test_refused_with_a_clear_line_and_nothing_written(self) -> None:
        self.expected = (
            f"TLS: etcd's server certificate is not trusted by the CA file {self.other.ca_file}"
        )
        self.check_refused()


class TestNoClientCert(_BadFiles):
    case = "no client cert"
    expected = "TLS: etcd requires a client certificate and none is configured"

    def test_refused_with_a_clear_line_and_nothing_written(self) -> None:
        self.check_refused()


class TestClientCertOfAnotherCa(_BadFiles):
    case = "client cert of another CA"

    def test_refused_with_a_clear_line_and_nothing_written(self) -> None:
        self.expected = f"TLS: etcd refused the client certificate {self.other.cert('client')}"
        self.check_refused()
